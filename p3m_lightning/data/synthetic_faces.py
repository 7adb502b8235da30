"""Seeded synthetic source faces in the CelebAMask-HQ layout, for P3M-CP tests and demos.

P3M-CP pastes faces from a public celebrity set (CelebAMask-HQ in the journal P3M-Net). This
writes drawn stand-ins in that set's layout, so the copy-paste path runs end to end without the
download::

    <root>/CelebA-HQ-img/<i>.jpg
    <root>/CelebAMask-HQ-mask-anno/<i // 2000>/<i:05d>_skin.png

Usage: ``python -m p3m_lightning.data.synthetic_faces data/synthetic_faces --n 16``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from p3m_lightning.atomic import write_bytes_atomic
from p3m_lightning.data.synthetic import render_portrait


def _png_or_jpg(path: Path, array: np.ndarray) -> None:
    data = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    ok, buffer = cv2.imencode(path.suffix, data, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode this image")
    write_bytes_atomic(path, buffer.tobytes())


def generate_faces(root: str | Path, n: int = 16, seed: int = 0, size: int = 128) -> Path:
    """Write ``n`` drawn faces (normal, unblurred: they stand for public celebrity faces).

    Each face is the head of a synthetic portrait rendered at ``size x size``; its face mask is
    written as the ``skin`` part. Files that exist are kept, so a second call is free.

    Returns:
        ``root``.
    """
    root = Path(root)
    for index in range(n):
        image_path = root / "CelebA-HQ-img" / f"{index}.jpg"
        mask_path = root / "CelebAMask-HQ-mask-anno" / str(index // 2000) / f"{index:05d}_skin.png"
        if image_path.is_file() and mask_path.is_file():
            continue
        portrait = render_portrait(size, size, np.random.default_rng([seed, index]))
        _png_or_jpg(mask_path, portrait.face_mask)
        _png_or_jpg(image_path, portrait.image)
    return root


def main(argv: list[str] | None = None) -> int:
    """Command line: write the faces and print where."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)
    generate_faces(args.root, args.n, args.seed, args.size)
    print(f"wrote {args.n} faces to {args.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
