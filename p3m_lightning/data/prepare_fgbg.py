"""Estimate the foreground F and background B of every P3M-10k training image.

The composition loss needs F and B per training image, and the P3M-10k release ships neither
(docs/p3m-net.md §2). This tool estimates both from the image and its matte with multi-level
foreground estimation (Germer et al. 2020, ``pymatting.estimate_foreground_ml``) and writes them
as 8-bit RGB PNGs next to the images::

    python -m p3m_lightning.data.prepare_fgbg <root> [--workers N] [--image-dir blurred_image]

    <root>/train/fg/<stem>.png, <root>/train/bg/<stem>.png

Estimate from the images you train on (``--image-dir``): the composition loss compares
``alpha * F + (1 - alpha) * B`` with that image, so F from normal images does not fit blurred ones.

It resumes: a sample whose F and B both exist is skipped. Every file is written under a hidden
temporary name in its folder and renamed into place, so an interrupted run leaves no partial PNG
and loses at most the samples in flight; the next run deletes the stale temporary files.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import cv2
import numpy as np
from pymatting import estimate_foreground_ml
from tqdm import tqdm

from p3m_lightning.data.p3m10k import DatasetError, read_mask, read_rgb, verify_split
from p3m_lightning.imageio import write_png_atomic

OUTPUT_FOLDERS = ("fg", "bg")
_TMP_SUFFIX = ".tmp"  # of write_png_atomic's temporary files


def estimate_fgbg(image: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Estimate F and B of one image from its matte.

    Args:
        image: (H, W, 3) uint8 RGB.
        alpha: (H, W) uint8 alpha in [0, 255].

    Returns:
        F and B, each (H, W, 3) uint8 RGB.
    """
    fg, bg = estimate_foreground_ml(
        image.astype(np.float32) / 255, alpha.astype(np.float32) / 255, return_background=True
    )
    return tuple(np.clip(np.rint(x * 255), 0, 255).astype(np.uint8) for x in (fg, bg))


def _prepare_one(image_path: Path, mask_path: Path, fg_path: Path, bg_path: Path) -> str | None:
    """Estimate and write F and B of one sample; the reason it failed, or None."""
    try:
        image, alpha = read_rgb(image_path), read_mask(mask_path)
        if image.shape[:2] != alpha.shape:
            (h, w), (mh, mw) = image.shape[:2], alpha.shape
            return f"image is {w}x{h} but its mask {mw}x{mh}"
        fg, bg = estimate_fgbg(image, alpha)
        write_png_atomic(fg_path, fg)
        write_png_atomic(bg_path, bg)
    # A worker must report, not die, on any failure of one sample, so the others still finish.
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _init_worker() -> None:
    # The workers already use every core; OpenCV's own threads would only oversubscribe them.
    cv2.setNumThreads(0)


def _run(
    jobs: dict[str, tuple[Path, Path, Path, Path]], workers: int
) -> Iterator[tuple[str, str | None]]:
    """Run `_prepare_one` on every job, yielding ``(stem, error or None)`` as each finishes."""
    if workers == 1:
        for name, args in jobs.items():
            yield name, _prepare_one(*args)
        return
    # spawn: the parent may hold threads (OpenCV's pool, tqdm's monitor) that fork would copy in an
    # arbitrary state.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        futures = {pool.submit(_prepare_one, *args): name for name, args in jobs.items()}
        for future in as_completed(futures):
            try:
                error = future.result()
            except BrokenProcessPool as exc:  # a worker killed from outside, e.g. out of memory
                error = f"worker process died: {exc}"
            yield futures[future], error


def _done_stems(folder: Path) -> set[str]:
    return {
        p.stem
        for p in folder.iterdir()
        if not p.name.startswith(".") and p.suffix.lower() in (".png", ".jpg", ".jpeg")
    }


def prepare_fgbg(
    root: str | Path,
    workers: int | None = None,
    image_dir: str = "blurred_image",
    progress: bool = True,
) -> dict:
    """Write ``train/fg/<stem>.png`` and ``train/bg/<stem>.png`` for every training image.

    Args:
        root: The P3M-10k root (holding ``train/``).
        workers: Worker processes (default: one per CPU); 1 runs in this process.
        image_dir: Training image folder F and B are estimated from.
        progress: Show a progress bar.

    Returns:
        ``{"done": [stems written], "skipped": [stems already complete], "failed": {image
        path: reason}}``; images without a mask are failures too.

    Raises:
        DatasetError: If ``train/<image_dir>`` or ``train/mask`` is missing.
    """
    split = Path(root) / "train"
    images = verify_split(split, [image_dir], mode="off")
    samples = verify_split(split, [image_dir, "mask"], mode="off")
    paired = {s.name for s in samples}
    failed = {
        str(s.paths[image_dir]): "no matching file in mask/" for s in images if s.name not in paired
    }
    for name in OUTPUT_FOLDERS:
        (split / name).mkdir(exist_ok=True)
        for stale in (split / name).glob(f".*{_TMP_SUFFIX}"):
            stale.unlink(missing_ok=True)
    complete = _done_stems(split / "fg") & _done_stems(split / "bg")
    skipped = [s.name for s in samples if s.name in complete]
    todo = [s for s in samples if s.name not in complete]
    jobs = {
        s.name: (
            s.paths[image_dir],
            s.paths["mask"],
            split / "fg" / f"{s.name}.png",
            split / "bg" / f"{s.name}.png",
        )
        for s in todo
    }
    done = []
    bar = tqdm(total=len(jobs), desc="estimating F/B", unit="image", disable=not progress)
    for name, error in _run(jobs, workers or os.cpu_count() or 1):
        bar.update()
        if error is None:
            done.append(name)
        else:
            failed[str(jobs[name][0])] = error
    bar.close()
    return {"done": sorted(done), "skipped": skipped, "failed": dict(sorted(failed.items()))}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 if any sample failed)."""
    parser = argparse.ArgumentParser(
        prog="python -m p3m_lightning.data.prepare_fgbg", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("root", type=Path, help="P3M-10k root folder (holding train/)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPUs)")
    parser.add_argument("--image-dir", default="blurred_image", help="training image folder")
    args = parser.parse_args(argv)
    try:
        result = prepare_fgbg(args.root, workers=args.workers, image_dir=args.image_dir)
    except DatasetError as exc:
        print(exc, file=sys.stderr)
        return 2
    failed = result["failed"]
    print(
        f"F/B estimation: {len(result['done'])} done, {len(result['skipped'])} skipped "
        f"(already complete), {len(failed)} failed"
    )
    for name, reason in failed.items():
        print(f"  failed: {name}: {reason}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
