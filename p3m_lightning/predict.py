"""Batch matting of photos: the body of ``python predict.py`` (see ``conf/predict.yaml``).

For every input photo ``<stem>.<ext>`` it writes, into the output folder:

- ``<stem>_alpha.png``: the 8-bit alpha matte;
- ``<stem>_rgba.png``: the RGBA cut-out, colour premultiplied by alpha (docs/p3m-net.md §6);
- ``<stem>_composite.png``: only with ``composite=<colour or image>``.

A trimap-based model (DIM, AlphaGAN, GCA, IndexNet, FBA) needs a trimap per photo: the file
``<stem>_trimap.png`` beside the photo, or ``<stem>.png`` / ``<stem>_trimap.png`` in the folder
``trimap=<folder>``; a background-based model (BASIC) likewise a plate ``<stem>_bg.<ext>``
(or in ``plate=<folder>``). Without one for every photo the run stops before matting any,
naming the photos that lack one. For such a model its guide files are not taken as photos.

Photos sharing a stem (``a.jpg`` and ``a.png``) are told apart by their suffix
(``a_jpg_alpha.png``, ``a_png_alpha.png``), then by a number. A photo that cannot be read or
matted is reported by name and reason, and the others are still processed; the exit status is 1
if any failed, 2 on a usage error (no checkpoint, no inputs), 0 otherwise.

Example (the quotes let ``#`` through both the shell and Hydra)::

    python predict.py ckpt_path=p3mnet_pretrained_on_p3m10k.pth input=photos/ output=mattes/ \
        strategy=hybrid 'composite="#00ff00"'

"""

from __future__ import annotations

import glob
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from p3m_lightning.imageio import (
    IMAGE_SUFFIXES,
    ImageReadError,
    alpha_to_uint8,
    read_image,
    write_png_atomic,
)

if TYPE_CHECKING:
    import numpy as np

    from p3m_lightning.api import Background, Matter

USAGE = (
    "usage: python predict.py ckpt_path=<published .pth or Lightning .ckpt> "
    "input=<file|folder|glob> output=<folder> [trimap=<folder>] [plate=<folder>] "
    "[architecture=<method>] [strategy=hybrid|resize|...] [resampling=fast|official] "
    "[device=cpu|cuda] "
    "[precision=32|bf16] [backend=torch|onnxruntime] [composite='#RRGGBB'|<background image>]"
)
OUTPUT_KINDS = ("alpha", "rgba", "composite")
"""Suffixes of the files this tool writes; such files in the output folder are not inputs."""
GUIDE_KINDS = {"trimap": "trimap", "bg": "plate"}
"""Per-photo guide files (``<stem>_trimap.png``, ``<stem>_bg.jpg``) of the models that take
them: for such a model they are not inputs themselves."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A configuration mistake, reported in one line without a traceback."""


def find_inputs(spec: str, output_dir: Path | None = None) -> list[Path]:
    """The photos named by ``spec``: a file, a folder (not recursive) or a glob pattern.

    A named file is taken whatever its suffix; from a folder or glob, only files with an image
    suffix (``IMAGE_SUFFIXES``), less this tool's own outputs in ``output_dir``.

    Raises:
        UsageError: nothing matches.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.is_file())
    elif glob.has_magic(spec):
        candidates = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        candidates = [p for p in candidates if p.is_file()]
    else:
        raise UsageError(f"input {spec!r}: no such file or folder")
    out = output_dir.resolve() if output_dir is not None else None

    def is_own_output(p: Path) -> bool:
        return p.parent.resolve() == out and p.stem.rsplit("_", 1)[-1] in OUTPUT_KINDS

    found = [p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES and not is_own_output(p)]
    if not found:
        raise UsageError(f"input {spec!r}: no images found (suffixes: {', '.join(IMAGE_SUFFIXES)})")
    return found


def without_guides(inputs: Sequence[Path], kinds: Sequence[str]) -> list[Path]:
    """``inputs`` less the guide files of the ``kinds`` the model takes (``<stem>_trimap.png``
    for a trimap-based model): they belong to the photos, they are not photos."""
    return [p for p in inputs if p.stem.rsplit("_", 1)[-1] not in kinds or "_" not in p.stem]


def find_guide(photo: Path, kind: str, folder: str | None) -> Path | None:
    """The ``kind`` (``trimap`` or ``bg``) file of ``photo``: ``<stem>_<kind>.<ext>`` beside it,
    or in ``folder`` ``<stem>_<kind>.<ext>`` or ``<stem>.<ext>`` (never the photo itself);
    ``None`` if there is none."""
    place = photo.parent if folder is None else Path(folder).expanduser()
    names = [f"{photo.stem}_{kind}"] + ([photo.stem] if folder is not None else [])
    for name in names:
        for suffix in IMAGE_SUFFIXES:
            candidate = place / f"{name}{suffix}"
            if candidate.is_file() and candidate.resolve() != photo.resolve():
                return candidate
    return None


def find_guides(
    inputs: Sequence[Path], needed: Sequence[str], folders: dict[str, str | None]
) -> list[dict[str, Path]]:
    """Per photo, the guide files the model needs (``trimap``, ``bg``).

    Raises:
        UsageError: some photos have none, named (the model cannot matte them).
    """
    guides: list[dict[str, Path]] = [{} for _ in inputs]
    for kind in needed:
        missing = []
        for i, photo in enumerate(inputs):
            found = find_guide(photo, kind, folders.get(kind))
            if found is None:
                missing.append(photo)
            else:
                guides[i][kind] = found
        if missing:
            where = folders.get(kind) or "beside each photo"
            shown = ", ".join(str(p) for p in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            option = "trimap" if kind == "trimap" else "plate"
            raise UsageError(
                f"this model needs a {GUIDE_KINDS[kind]} per photo: <stem>_{kind}.png "
                f"({where}); none for {shown}{more}. Give them, or a folder with "
                f"{option}=<folder>"
            )
    return guides


def output_stems(paths: Sequence[Path]) -> list[str]:
    """Unique output name stems, in order.

    A photo's stem; where photos share a stem, the stem and suffix (``a.jpg`` -> ``a_jpg``);
    where even that is shared (``x/a.jpg``, ``y/a.jpg`` from a recursive glob), a number too.
    """
    counts = Counter(p.stem for p in paths)
    taken: set[str] = set()
    stems = []
    for p in paths:
        base = p.stem if counts[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}"
        stem, number = base, 1
        while stem in taken:
            number += 1
            stem = f"{base}_{number}"
        taken.add(stem)
        stems.append(stem)
    return stems


def _required(cfg: DictConfig, key: str) -> str:
    value = cfg.get(key)
    if value is None or str(value).strip() == "":
        raise UsageError(f"{key} is required\n{USAGE}")
    return str(value)


def _prepare(
    cfg: DictConfig,
) -> tuple[Matter, list[Path], list[dict[str, Path]], Path, Background | None]:
    """Check the configuration and load the model: the model, photos, their guide files
    (trimaps, plates), output folder, background.

    Raises:
        UsageError: with the reason, for any mistake in the configuration or the checkpoint.
    """
    ckpt_path = Path(_required(cfg, "ckpt_path")).expanduser()
    output_dir = Path(_required(cfg, "output")).expanduser()
    inputs = find_inputs(_required(cfg, "input"), output_dir)
    if not ckpt_path.is_file():
        raise UsageError(f"ckpt_path {str(ckpt_path)!r}: no such file")
    # torch loads only now (seconds), so the mistakes above are reported at once.
    from p3m_lightning.api import Matter, parse_background
    from p3m_lightning.models.safe_load import CheckpointError
    from p3m_lightning.plugins import import_plugins

    try:
        import_plugins(cfg.get("plugins"))
        matter = Matter(
            ckpt_path,
            device=cfg.device,
            strategy=cfg.strategy,
            precision=cfg.precision,
            max_side=cfg.max_side,
            shorter_side_limit=cfg.shorter_side_limit,
            backend=cfg.get("backend", "torch"),
            resampling=cfg.get("resampling", "fast"),
            architecture=cfg.get("architecture"),
            architecture_config=(
                OmegaConf.to_container(cfg.architecture_config, resolve=True)
                if cfg.get("architecture_config")
                else None
            ),
        )
        # A bad colour or background image fails now, not once per photo.
        composite = cfg.get("composite")
        background = None if composite is None else parse_background(str(composite))
    except (ValueError, ImportError, CheckpointError, ImageReadError) as err:
        raise UsageError(str(err)) from None
    needed = [k for k in GUIDE_KINDS if k in matter.inputs]
    if needed:
        inputs = without_guides(inputs, needed)
        if not inputs:
            raise UsageError(f"input {cfg.input!r}: only {' and '.join(needed)} files found")
    guides = find_guides(inputs, needed, {"trimap": cfg.get("trimap"), "bg": cfg.get("plate")})
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"output {str(output_dir)!r}: cannot create ({err.strerror})") from None
    return matter, inputs, guides, output_dir, background


def predict(cfg: DictConfig) -> int:
    """Matte every input photo; print a summary; return the exit status.

    Args:
        cfg: the ``conf/predict.yaml`` keys: ``ckpt_path``, ``input``, ``output``, ``trimap``,
            ``plate``, ``architecture``, ``strategy``,
            ``device``, ``precision``, ``backend``, ``composite``, ``max_side``,
            ``shorter_side_limit``.

    Returns:
        0 if every photo was matted, 1 if any failed, 2 on a usage error.
    """
    try:
        matter, inputs, guides, output_dir, background = _prepare(cfg)
    except UsageError as err:
        print(f"predict: {err}", file=sys.stderr)
        return EXIT_USAGE

    start = time.perf_counter()
    failures = _matte_all(matter, inputs, guides, output_dir, background)
    seconds = time.perf_counter() - start

    done = len(inputs) - len(failures)
    print(
        f"{done} done, {len(failures)} failed in {seconds:.2f} s "
        f"({seconds / len(inputs):.2f} s/photo, {matter.strategy.name}, "
        f"precision {matter.precision}, {matter.backend} on {matter.device}); "
        f"outputs in {output_dir}"
    )
    for path, reason in failures:
        print(f"  failed: {path}: {reason}")
    return EXIT_FAILED if failures else EXIT_OK


PREFETCH = 2
"""Photos decoded ahead of the network, and outputs queued for writing: bounds the memory."""


def _describe(err: Exception) -> str:
    if isinstance(err, ImageReadError):
        return err.reason
    return f"{type(err).__name__}: {err}"


def _read(photo: Path, guides: dict[str, Path]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The photo and its guide maps (trimap as 8-bit grey, plate as RGB)."""
    from p3m_lightning.api import load_trimap

    rgb = read_image(photo)
    maps = {
        kind: load_trimap(path) if kind == "trimap" else read_image(path)
        for kind, path in guides.items()
    }
    return rgb, maps


def _matte_all(
    matter: Matter,
    inputs: list[Path],
    guides: list[dict[str, Path]],
    output_dir: Path,
    background: Background | None,
) -> list[tuple[Path, str]]:
    """Matte every photo with the one loaded model; returns the failures (path, reason).

    A reader thread decodes the next photos and a writer thread encodes and writes the finished
    ones while the network runs (image codecs and PyTorch release the GIL). Each photo's
    outputs are those of matting it alone.
    """
    jobs = list(zip(inputs, output_stems(inputs), strict=True))
    failures: dict[int, tuple[Path, str]] = {}
    writes: deque[tuple[int, Future[None]]] = deque()

    def finish_write() -> None:
        index, future = writes.popleft()
        try:
            future.result()
        except Exception as err:  # noqa: BLE001 - one bad photo must not stop the batch
            failures[index] = (jobs[index][0], _describe(err))

    with (
        ThreadPoolExecutor(1, thread_name_prefix="read") as reader,
        ThreadPoolExecutor(1, thread_name_prefix="write") as writer,
    ):
        reads = deque(
            reader.submit(_read, path, guides[i]) for i, (path, _) in enumerate(jobs[:PREFETCH])
        )
        for index, (path, stem) in enumerate(tqdm(jobs, desc="matting", unit="photo")):
            future = reads.popleft()
            if index + PREFETCH < len(jobs):
                ahead = index + PREFETCH
                reads.append(reader.submit(_read, jobs[ahead][0], guides[ahead]))
            try:
                rgb, maps = future.result()
                alpha = matter.predict(rgb, trimap=maps.get("trimap"), plate=maps.get("bg"))
            except Exception as err:  # noqa: BLE001 - one bad photo must not stop the batch
                failures[index] = (path, _describe(err))
                continue
            if len(writes) >= PREFETCH:
                finish_write()
            writes.append(
                (
                    index,
                    writer.submit(
                        _write_outputs, matter, rgb, alpha, output_dir / stem, background
                    ),
                )
            )
        while writes:
            finish_write()
    return [failures[i] for i in sorted(failures)]


def _write_outputs(
    matter: Matter,
    rgb: np.ndarray,
    alpha: np.ndarray,
    out_stem: Path,
    background: Background | None,
) -> None:
    """Write one photo's outputs, each atomically."""
    write_png_atomic(f"{out_stem}_alpha.png", alpha_to_uint8(alpha))
    write_png_atomic(f"{out_stem}_rgba.png", matter.cutout(rgb, alpha))
    if background is not None:
        write_png_atomic(f"{out_stem}_composite.png", matter.composite(rgb, alpha, background))
