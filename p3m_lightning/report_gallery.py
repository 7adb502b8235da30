"""The comparison gallery of a sweep: each chosen test image with its true alpha and every
method's matte and error map, one PNG per PPT cell (``python -m p3m_lightning.report``).

Images are chosen by name, or as the N hardest of each test set: the highest mean whole-image
SAD over the sweep's runs that scored them (their ``per_image.csv``). Each matte is predicted
again from the run's ``checkpoints/last.ckpt`` on the run's own test data (its ``config.yaml``)
through the one evaluation path (`p3m_lightning.evaluation.score_image`), so the SAD under a
matte is the figure that run recorded for the image. One model is held in memory at a time;
of several seeds of a model, the lowest seed's run is shown.

Photos are shown as the training's image panels show them (`p3m_lightning.panels.shown_photo`):
face-obfuscated at full resolution, failing closed, under the strictest ``privacy`` settings
of the runs shown (`strictest_privacy`). A photo whose face region cannot be established is
left out with its row (``on_no_face`` ``skip``, and ``error``, which a report does not stop on).
"""

from __future__ import annotations

import csv
import gc
import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict
from PIL import Image, ImageDraw, ImageFont

from p3m_lightning.data.privacy import DETECTORS, ON_PARTIAL
from p3m_lightning.imageio import alpha_to_uint8, write_png_atomic
from p3m_lightning.panels import DisplayPrivacy, error_map, gray_to_rgb, shown_photo

DEFAULT_HARDEST = 4
"""Images per test set when none are named."""
TILE = 256
"""Side of the square box each picture is fitted into (letterboxed), in pixels."""
GAP = 6
TITLE_HEIGHT = 26
HEADER_HEIGHT = 22
CAPTION_HEIGHT = 18
LETTERBOX = (222, 226, 234)
"""Colour around a picture inside its box (a light blue-gray no matte or photo tile uses)."""
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
FIXED_COLUMNS = ("image", "true alpha")
ON_NO_FACE_ORDER = ("head", "person", "skip", "error")
"""``on_no_face`` from the least to the most cautious (``skip`` and ``error`` show nothing)."""


class GalleryRun(Protocol):
    """What the gallery reads of a run of the report: its row name, training, seed and the
    ``metrics.json`` path relative to the sweep."""

    model: str
    train: str
    seed: int | None
    path: str


@dataclass(frozen=True)
class GalleryFigure:
    """One written gallery PNG: a PPT cell on one test set.

    Attributes:
        cell: ``B:N`` etc. (training : test-set kind).
        test_set: the test set's name.
        path: the PNG.
        images: the rows, top to bottom.
        methods: the column headers of the mattes, left to right.
        photo_sources: how each shown photo's face region was found (``mask``, ``detector``,
            ``person``, ``head``, ``unobfuscated``) -> count.
        scores: ``(method, image) -> {"sad", "mse"}``, whole image, of each matte shown.
    """

    cell: str
    test_set: str
    path: Path
    images: tuple[str, ...]
    methods: tuple[str, ...]
    photo_sources: dict[str, int]
    scores: dict[tuple[str, str], dict[str, float]]


@dataclass
class Gallery:
    """What ``write_gallery`` wrote, how images were chosen, the privacy used, and notes."""

    figures: list[GalleryFigure] = field(default_factory=list)
    choice: str = ""
    privacy: DisplayPrivacy | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class _Cell:
    """Tiles collected for one (cell, test set): ``(method, image) -> (matte, error, metrics)``."""

    methods: list[str] = field(default_factory=list)
    tiles: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, dict[str, float]]] = field(
        default_factory=dict
    )


def tile_origin(row: int, column: int) -> tuple[int, int]:
    """Top-left ``(x, y)`` of the box of ``row``, ``column`` in a gallery PNG."""
    x = GAP + column * (TILE + GAP)
    y = TITLE_HEIGHT + HEADER_HEIGHT + GAP + row * (TILE + CAPTION_HEIGHT + GAP)
    return x, y


def fit_tile(picture: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(TILE, TILE, 3)``: scaled to fit, centred on `LETTERBOX`."""
    height, width = picture.shape[:2]
    scale = min(TILE / height, TILE / width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Area averaging when shrinking keeps thin hair strands visible instead of aliased.
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(picture, size, interpolation=interpolation)
    tile = np.empty((TILE, TILE, 3), np.uint8)
    tile[:] = LETTERBOX
    x0, y0 = (TILE - size[0]) // 2, (TILE - size[1]) // 2
    tile[y0 : y0 + size[1], x0 : x0 + size[0]] = resized
    return tile


def strictest_privacy(configs: Sequence[Mapping[str, Any]]) -> DisplayPrivacy:
    """One obfuscation for photos several runs show: the most cautious of their ``privacy``.

    Photos are shown unobfuscated only when every run waives privacy explicitly; the detector is
    used only when every run uses it (without it every image gets the fallback); ``on_no_face``
    is the most cautious of the runs' (`ON_NO_FACE_ORDER`), and so is ``on_partial``
    (``person`` before ``head`` before ``faces``); the detector is the one of best recall the
    runs use (`DETECTORS`: ``mtcnn`` before ``haar``); the method is the runs' common one, ``fill``
    where they differ. A run without ``privacy`` has the defaults.
    """
    policies = [DisplayPrivacy(**dict(config.get("privacy") or {})) for config in configs]
    if not policies:
        return DisplayPrivacy()
    methods = {p.method for p in policies}
    return DisplayPrivacy(
        allow_unobfuscated=all(p.allow_unobfuscated is True for p in policies),
        method=methods.pop() if len(methods) == 1 else "fill",
        on_no_face=max((p.on_no_face for p in policies), key=ON_NO_FACE_ORDER.index),
        use_detector=all(p.use_detector for p in policies),
        on_partial=min((p.on_partial for p in policies), key=ON_PARTIAL.index),
        detector=min((p.detector for p in policies), key=DETECTORS.index),
    )


def read_per_image(path: Path) -> dict[tuple[str, str], float]:
    """``(set, name) -> whole-image SAD`` of a run's ``per_image.csv``.

    Raises:
        ValueError: the file has no ``set``, ``name`` and ``sad`` columns.
    """
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"set", "name", "sad"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: expected the columns set, name, sad")
        return {(row["set"], row["name"]): float(row["sad"]) for row in reader if row["sad"]}


def hardest_images(
    per_image: Sequence[Mapping[tuple[str, str], float]], count: int
) -> dict[str, list[str]]:
    """Test set -> its ``count`` images of highest mean SAD over the runs that scored them
    (ties by name)."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for run in per_image:
        for key, sad in run.items():
            values[key].append(sad)
    by_set: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for (test_set, name), sads in values.items():
        by_set[test_set].append((-statistics.fmean(sads), name))
    return {s: [name for _, name in sorted(items)[:count]] for s, items in by_set.items()}


def _eval_set_names(config: DictConfig) -> list[str]:
    specs = OmegaConf.select(config, "data.eval_sets", default=None) or []
    return [str(s) if isinstance(s, str) else str(s.get("name")) for s in specs]


def _file_name(cell: str, test_set: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{cell.replace(':', '-')}_{test_set}") + ".png"


def _index_by_name(dataset: Any) -> dict[str, int] | None:
    """Sample name -> index in ``dataset`` (a `P3MEvalDataset` or a ``Subset`` of one)."""
    base, positions = dataset, None
    if hasattr(dataset, "indices") and hasattr(dataset, "dataset"):
        base, positions = dataset.dataset, list(dataset.indices)
    samples = getattr(base, "samples", None)
    if samples is None:
        return None
    names = [s.name for s in samples]
    positions = range(len(names)) if positions is None else positions
    return {names[i]: k for k, i in enumerate(positions)}


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """``text``, shortened with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def render(
    title: str,
    methods: Sequence[str],
    rows: Sequence[
        tuple[str, np.ndarray, np.ndarray, Sequence[tuple[np.ndarray, str, np.ndarray] | None]]
    ],
) -> np.ndarray:
    """A gallery PNG's pixels: a title, column headers, a row per image.

    Args:
        title: the top line.
        methods: a header per method, spanning its matte and error map.
        rows: ``(name, photo tile, true-alpha tile, per method (matte tile, its caption, error
            tile) or None)``, tiles `fit_tile`-ed; the photo is captioned with ``name``.

    Returns:
        ``(H, W, 3)`` uint8 RGB; each tile's box at `tile_origin`.
    """
    columns = len(FIXED_COLUMNS) + 2 * len(methods)
    width = GAP + columns * (TILE + GAP)
    height = tile_origin(len(rows), 0)[1]
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = BACKGROUND
    blank = np.empty((TILE, TILE, 3), np.uint8)
    blank[:] = LETTERBOX
    captions: list[tuple[int, int, int, str]] = []
    for r, (name, photo, alpha, mattes) in enumerate(rows):
        tiles: list[tuple[np.ndarray, str]] = [(photo, name), (alpha, "true alpha")]
        for entry in mattes:
            if entry is None:
                tiles += [(blank, "not predicted"), (blank, "")]
            else:
                tiles += [(entry[0], entry[1]), (entry[2], "|pred - true|")]
        for c, (tile, caption) in enumerate(tiles):
            x, y = tile_origin(r, c)
            canvas[y : y + TILE, x : x + TILE] = tile
            captions.append((x, y + TILE + 2, TILE, caption))
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    big, small = _font(16), _font(13)
    draw.text((GAP, 4), _fit_text(draw, title, big, width - 2 * GAP), fill=TEXT, font=big)
    header_y = TITLE_HEIGHT + 2
    for c, label in enumerate(FIXED_COLUMNS):
        draw.text((tile_origin(0, c)[0], header_y), label, fill=TEXT, font=small)
    for m, label in enumerate(methods):
        x = tile_origin(0, len(FIXED_COLUMNS) + 2 * m)[0]
        span = 2 * TILE + GAP
        text = _fit_text(draw, label, small, span)
        draw.text((x + (span - draw.textlength(text, font=small)) / 2, header_y), text, TEXT, small)
    for x, y, span, caption in captions:
        draw.text((x, y), _fit_text(draw, caption, small, span), fill=TEXT, font=small)
    return np.asarray(image)


def _usable_runs(root: Path, runs: Sequence[GalleryRun], notes: list[str]) -> list[GalleryRun]:
    """One run per (model, training): the lowest seed with a config and a last checkpoint."""
    needed = ("config.yaml", "checkpoints/last.ckpt")
    chosen: dict[tuple[str, str], GalleryRun] = {}
    lacking: dict[tuple[str, str], str] = {}
    for run in sorted(runs, key=lambda r: (r.model, r.train, r.seed is None, r.seed or 0)):
        key = (run.model, run.train)
        folder = (root / run.path).parent
        if key in chosen:
            continue
        if all((folder / name).is_file() for name in needed):
            chosen[key] = run
        else:
            lacking.setdefault(key, str(folder))
    lacking = {key: folder for key, folder in lacking.items() if key not in chosen}
    if lacking and not chosen:
        notes.append(
            f"gallery: none of the {len(runs)} runs has {' and '.join(needed)} (a sweep of "
            "train.py writes both) to predict its mattes"
        )
    else:
        notes.extend(
            f"gallery: no matte of {model} trained on {train}: no run of it has "
            f"{' and '.join(needed)} ({folder})"
            for (model, train), folder in lacking.items()
        )
    return list(chosen.values())


def _choose_images(
    root: Path,
    runs: Sequence[GalleryRun],
    test_sets: Sequence[str],
    images: Sequence[str] | None,
    hardest: int,
    notes: list[str],
) -> tuple[dict[str, list[str]], str]:
    """Test set -> names to show, and how they were chosen (in words)."""
    if images:
        return {s: list(images) for s in test_sets}, "named: " + ", ".join(images)
    tables = []
    for run in runs:
        path = (root / run.path).parent / "per_image.csv"
        if not path.is_file():
            continue
        try:
            tables.append(read_per_image(path))
        except (OSError, ValueError) as err:
            notes.append(f"gallery: skipped {path}: {err}")
    if not tables:
        notes.append(
            "gallery: no per_image.csv in the runs to find the hardest images; name them with "
            "--images NAME,NAME"
        )
        return {}, ""
    hardest_by_set = hardest_images(tables, hardest)
    choice = (
        f"the {hardest} hardest of each test set: highest mean whole-image SAD over the "
        f"{len(tables)} runs' per_image.csv"
    )
    return {s: hardest_by_set.get(s, []) for s in test_sets}, choice


@dataclass
class _Shown:
    """What the runs' predictions have given so far.

    Attributes:
        privacy: how photos are obfuscated.
        photos: ``(set, name) -> (photo tile, true-alpha tile, face-region source)``, None
            where the photo may not be shown.
        seen: ``(set, name)`` found in a run's test data.
        notes: what was left out and why.
    """

    privacy: DisplayPrivacy
    photos: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, str] | None] = field(
        default_factory=dict
    )
    seen: set[tuple[str, str]] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def _predict_run(
    run: GalleryRun,
    folder: Path,
    config: DictConfig,
    wanted: Mapping[str, Sequence[str]],
    device: str,
    shown: _Shown,
    progress: Any,
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, dict[str, float]]]:
    """Re-predict ``wanted`` (test set -> names) with one run's checkpoint on its own data.

    Adds to ``shown`` the photos of the images it is the first to load; returns ``(set, name)
    -> (matte tile, error tile, {"sad", "mse"})``.
    """
    import torch
    from hydra.utils import instantiate
    from torch.utils.data import default_collate

    from p3m_lightning.data.p3m10k import DatasetError
    from p3m_lightning.data.privacy import PrivacyError
    from p3m_lightning.evaluation import net_inputs, score_image
    from p3m_lightning.metrics import MattingMetrics
    from p3m_lightning.models.checkpoint import load_checkpoint
    from p3m_lightning.models.safe_load import CheckpointError
    from p3m_lightning.plugins import PluginError, import_plugins
    from p3m_lightning.strategies import build_strategy

    label = f"{run.model} trained on {run.train} ({folder})"
    try:
        import_plugins(config.get("plugins"))
        loaded = load_checkpoint(folder / "checkpoints" / "last.ckpt", map_location=device)
    except (PluginError, CheckpointError, FileNotFoundError) as err:
        shown.notes.append(f"gallery: no matte of {label}: {err}")
        return {}
    max_side = OmegaConf.select(config, "model.max_side", default=None)
    strategy = build_strategy(loaded.strategy, None if max_side is None else int(max_side))
    metrics_json = json.loads((folder / "metrics.json").read_text())
    precision = str((metrics_json.get("precision") or {}).get("eval") or "32")
    data = config.data.copy()
    with open_dict(data):
        # The run verified its data; finding a few images needs only their names.
        data.verify = "quick"
        data.num_workers = 0
    try:
        datamodule = instantiate(data)
        datamodule.eval_backgrounds = "bg" in net_inputs(loaded.net)
        datamodule.prepare_data()
        datamodule.setup("test")
    except (DatasetError, FileExistsError, ValueError) as err:
        shown.notes.append(f"gallery: no matte of {label}: its test data: {err}")
        return {}
    out: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, dict[str, float]]] = {}
    for test_set, names in wanted.items():
        index = _index_by_name(datamodule.eval_datasets[test_set])
        if index is None:
            shown.notes.append(f"gallery: {test_set} of {label}: cannot look images up by name")
            progress.update(len(names))
            continue
        for name in names:
            progress.update(1)
            if name not in index:
                continue
            shown.seen.add((test_set, name))
            sample = datamodule.eval_datasets[test_set][index[name]]
            batch = default_collate([sample])
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            metrics = MattingMetrics()
            with torch.inference_mode():
                pred = score_image(
                    loaded.net, strategy, batch, metrics, precision, loaded.channels_last
                )
            if pred is None:
                shown.notes.append(f"gallery: {test_set}/{name}: not scored by {label}")
                continue
            alpha = batch["alpha"][0, 0].float().cpu().numpy()
            pred_np = pred.float().cpu().numpy()
            if (test_set, name) not in shown.photos:
                try:
                    photo, source = shown_photo(batch, shown.privacy)
                except PrivacyError:
                    photo, source = None, "skipped"
                shown.photos[(test_set, name)] = (
                    None
                    if photo is None
                    else (fit_tile(photo), fit_tile(gray_to_rgb(alpha_to_uint8(alpha))), source)
                )
            row = metrics.rows[-1]
            out[(test_set, name)] = (
                fit_tile(gray_to_rgb(alpha_to_uint8(pred_np))),
                fit_tile(error_map(pred_np, alpha)),
                {"sad": float(row["sad"]), "mse": float(row["mse"])},
            )
    del loaded, datamodule
    gc.collect()
    return out


def write_gallery(
    root: Path,
    runs: Sequence[GalleryRun],
    out_dir: Path,
    columns: Sequence[tuple[str, str]],
    images: Sequence[str] | None = None,
    hardest: int = DEFAULT_HARDEST,
    device: str = "cpu",
) -> Gallery:
    """Write a gallery PNG per (cell, test set) of ``columns`` that a run of the sweep tested.

    Args:
        root: the sweep folder (runs' paths are relative to it).
        runs: the report's runs.
        out_dir: where the PNGs go (``<cell>_<test set>.png``, ``B-N_P3M-500-NP.png``).
        columns: ``(cell, test set)`` pairs, the cell's first letter the training.
        images: names (stems) to show; None: the ``hardest`` of each test set.
        hardest: images per test set when none are named; 0 writes no gallery.
        device: where the models run (``cpu``, ``cuda``).

    Returns:
        The figures written and notes on what was left out and why. PNGs an earlier report
        left in ``out_dir`` are deleted first: none may outlive a stricter privacy setting.
    """
    from tqdm import tqdm

    gallery = Gallery()
    notes = gallery.notes
    for stale in out_dir.glob("*.png"):
        stale.unlink()
    if not images and hardest <= 0:
        notes.append("gallery: none asked for (--hardest 0)")
        return gallery
    usable = _usable_runs(root, runs, notes)
    configs = {run.path: OmegaConf.load((root / run.path).parent / "config.yaml") for run in usable}
    sets_of = {run.path: _eval_set_names(configs[run.path]) for run in usable}
    cells = [
        (cell, test_set)
        for cell, test_set in columns
        if any(r.train == cell[0] and test_set in sets_of[r.path] for r in usable)
    ]
    if not cells:
        return gallery
    data_roots = {str(OmegaConf.select(c, "data.root", default="")) for c in configs.values()}
    if len(data_roots) > 1:
        notes.append(
            f"gallery: the runs read different data roots ({', '.join(sorted(data_roots))}); "
            "each photo is shown from the first run that read it"
        )
    wanted, gallery.choice = _choose_images(
        root, runs, sorted({s for _, s in cells}), images, hardest, notes
    )
    shown = _Shown(strictest_privacy(list(configs.values())), notes=notes)
    gallery.privacy = shown.privacy
    collected: dict[tuple[str, str], _Cell] = {c: _Cell() for c in cells}
    plan = {
        run.path: {
            s: wanted.get(s, [])
            for s in sets_of[run.path]
            if any(cell[0] == run.train and test_set == s for cell, test_set in cells)
        }
        for run in usable
    }
    total = sum(len(names) for sets in plan.values() for names in sets.values())
    with tqdm(total=total, desc="gallery", unit="image", dynamic_ncols=True) as progress:
        for run in usable:
            if not any(plan[run.path].values()):
                continue
            progress.set_postfix_str(f"{run.model} ({run.train})")
            folder = (root / run.path).parent
            predicted = _predict_run(
                run, folder, configs[run.path], plan[run.path], device, shown, progress
            )
            method = run.model if run.seed is None else f"{run.model}, seed {run.seed}"
            for (cell, test_set), target in collected.items():
                tiles = {n: t for (s, n), t in predicted.items() if s == test_set}
                if cell[0] == run.train and tiles:
                    target.methods.append(method)
                    target.tiles.update({(method, n): t for n, t in tiles.items()})
    _note_missing(wanted, images, shown)
    out_dir.mkdir(parents=True, exist_ok=True)
    for (cell, test_set), target in collected.items():
        figure = _write_cell(out_dir, cell, test_set, target, wanted.get(test_set, []), shown)
        if figure is not None:
            gallery.figures.append(figure)
    return gallery


def _note_missing(
    wanted: Mapping[str, Sequence[str]], images: Sequence[str] | None, shown: _Shown
) -> None:
    """Notes on the images asked for that no run found, and on the photos left out."""
    if images:
        found = {name for _, name in shown.seen}
        absent = [name for name in images if name not in found]
        if absent:
            shown.notes.append(f"gallery: no test set of the runs has {', '.join(absent)}")
    else:
        absent = [f"{s}/{n}" for s, names in wanted.items() for n in names]
        absent = [key for key in absent if tuple(key.split("/", 1)) not in shown.seen]
        if absent:
            shown.notes.append(
                f"gallery: in per_image.csv but not in the runs' test data: {', '.join(absent)}"
            )
    left_out = sorted(f"{s}/{n}" for (s, n), photo in shown.photos.items() if photo is None)
    if left_out:
        shown.notes.append(
            "gallery: left out, no face region could be established (privacy.on_no_face="
            f"{shown.privacy.on_no_face}): {', '.join(left_out)}"
        )


def _write_cell(
    out_dir: Path,
    cell: str,
    test_set: str,
    target: _Cell,
    names: Sequence[str],
    shown: _Shown,
) -> GalleryFigure | None:
    """Render and write one cell's PNG; None when no image of it can be shown."""
    rows = []
    sources: Counter[str] = Counter()
    for name in names:
        photo = shown.photos.get((test_set, name))
        if photo is None or not any((m, name) in target.tiles for m in target.methods):
            continue
        mattes: list[tuple[np.ndarray, str, np.ndarray] | None] = []
        for method in target.methods:
            tiles = target.tiles.get((method, name))
            if tiles is None:
                mattes.append(None)
                continue
            matte, error, figures = tiles
            caption = f"SAD {figures['sad']:.2f}  MSE {figures['mse']:.4f}"
            mattes.append((matte, caption, error))
        rows.append((name, photo[0], photo[1], mattes))
        sources[photo[2]] += 1
    if not rows:
        return None
    shown_names = {row[0] for row in rows}
    title = f"{cell} on {test_set}: {len(rows)} image(s), mattes re-predicted from each checkpoint"
    path = out_dir / _file_name(cell, test_set)
    write_png_atomic(path, render(title, target.methods, rows))
    return GalleryFigure(
        cell,
        test_set,
        path,
        tuple(r[0] for r in rows),
        tuple(target.methods),
        dict(sources),
        {key: tiles[2] for key, tiles in target.tiles.items() if key[1] in shown_names},
    )
