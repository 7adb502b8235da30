"""Check that a split meant to be face-obfuscated shows no detectable face.

Usage::

    python -m p3m_lightning.data.audit P3M-10k/validation/P3M-500-P
    python -m p3m_lightning.data.audit path/to/a/folder/of/images [--detector haar]

A P3M-10k split folder (one holding ``blurred_image/``) is audited on its blurred images; any
other folder on the images it holds. Prints every image in which `detect_faces` still finds a
face and exits 1 if there is one, 0 if there is none, 2 if the folder is missing or holds no
image. The detector (MTCNN by default) misses some faces (see the README's privacy section), so
a clean audit is evidence, not proof.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
from tqdm import tqdm

from p3m_lightning.data.privacy import DETECTORS, detect_faces

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def split_images(path: str | Path) -> list[Path]:
    """List the images to audit in ``path``, sorted by name.

    Args:
        path: A folder of images, or a P3M-10k split folder with a ``blurred_image/`` subfolder
            (then those are the images).

    Returns:
        The image files.

    Raises:
        FileNotFoundError: If ``path`` is not a directory.
        ValueError: If it holds no image.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such directory")
    if (folder / "blurred_image").is_dir():
        folder = folder / "blurred_image"
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this directory")
    return images


def audit_split(
    path: str | Path,
    *,
    min_size: int | None = None,
    detector: str = "mtcnn",
    progress: bool = False,
) -> list[tuple[str, int]]:
    """Run the face detector over every image of a split meant to be obfuscated.

    Args:
        path: As for `split_images`.
        min_size: Smallest face side in pixels to look for; None: the detector's default.
        detector: ``mtcnn`` or ``haar`` (`p3m_lightning.data.face_detection.detect_faces`).
        progress: Show a tqdm progress bar (on stderr) and print each flagged image as found.

    Returns:
        ``(file name, number of faces)`` for each image in which a face is still found.

    Raises:
        FileNotFoundError: If ``path`` is not a directory.
        ValueError: If it holds no image, or an image cannot be decoded.
    """
    flagged: list[tuple[str, int]] = []
    for image_path in tqdm(split_images(path), desc="audit", unit="img", disable=not progress):
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            # An unreadable image cannot be vouched for, so it must not pass silently.
            raise ValueError(f"{image_path}: cannot decode this image")
        faces = detect_faces(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), min_size, detector=detector)
        if faces:
            flagged.append((image_path.name, len(faces)))
            if progress:
                tqdm.write(f"{image_path.name}: {len(faces)} face(s)")
    return flagged


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 clean, 1 faces found, 2 error)."""
    parser = argparse.ArgumentParser(
        prog="python -m p3m_lightning.data.audit",
        description="Report images of a face-obfuscated split in which a face is still found.",
    )
    parser.add_argument("split", help="folder of images, or a P3M split with blurred_image/")
    parser.add_argument(
        "--min-size",
        type=int,
        default=None,
        help="smallest face side in px (default: 20 for mtcnn, 24 for haar)",
    )
    parser.add_argument("--detector", choices=DETECTORS, default="mtcnn", help="face detector")
    args = parser.parse_args(argv)
    try:
        total = len(split_images(args.split))
        flagged = audit_split(
            args.split, min_size=args.min_size, detector=args.detector, progress=True
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(flagged)} of {total} images still show a face")
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
