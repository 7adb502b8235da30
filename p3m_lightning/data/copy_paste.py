"""P3M-CP at the image level (P3M-ICP): paste a public face into a training portrait's face region.

The journal P3M-Net (Ma, Li, Zhang, Tao, IJCV 2023) borrows facial appearance from a public
celebrity face set to give a model trained on face-obfuscated portraits some face context back.
For one training portrait with a face mask:

1. a source face (image and face mask) is drawn from the configured source set;
2. it is aligned to the target: its face centre (the mask's centroid) onto the target's, scaled
   so the face sizes (square roots of the mask areas) agree, then augmented by a random rotation,
   scale and horizontal flip (`align_face`);
3. inside the target's face mask only, the image takes the aligned source's pixels. F and B take
   them too, so that ``alpha F + (1 - alpha) B`` is still the image and the composition loss
   never sees the face that was there (`ImageCopyPaste`).

The aligned source and the target face mask are also what the feature-level variant (P3M-FCP,
`p3m_lightning.models.feature_copy_paste`) pastes into encoder features.

Privacy: faces come only from the source set given here (public celebrity faces, or the training
set's own images exactly as training loads them, i.e. already obfuscated in B-training), never
from an un-obfuscated training image.

Source layouts (`FaceFolder`):

- ``celebamask_hq``: CelebAMask-HQ as distributed: ``CelebA-HQ-img/<i>.jpg`` and
  ``CelebAMask-HQ-mask-anno/<k>/<i:05d>_<part>.png`` (k = i // 2000); the face mask is the union
  of the facial parts (`CELEBAMASK_FACE_PARTS`), resized to the image.
- ``folders``: ``<image_dir>/<stem>.jpg|png`` (``image/`` by default) and
  ``facemask/<stem>.png`` (nonzero on the face); with ``image_dir=blurred_image`` and a P3M-10k
  ``train/`` folder as root, the training set's own (blurred) faces, the journal's ``SELF``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np

CELEBAMASK_FACE_PARTS = (
    "skin",
    "nose",
    "l_eye",
    "r_eye",
    "l_brow",
    "r_brow",
    "mouth",
    "u_lip",
    "l_lip",
    "eye_g",
)
"""CelebAMask-HQ part masks whose union is the face region (hair, ears, neck and cloth left out,
as P3M-10k's face masks leave them out)."""

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class FaceSource(Protocol):
    """A set of faces to paste: ``len`` and ``face(index) -> (image, face_mask)``."""

    def __len__(self) -> int: ...

    def face(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(H, W, 3)`` uint8 RGB and ``(H, W)`` uint8 mask, nonzero on the face."""
        ...


class FaceSourceError(RuntimeError):
    """A face source folder is missing, empty or inconsistent; the message says what to do."""


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise FaceSourceError(f"{path}: cannot be decoded as an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _read_gray(path: Path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise FaceSourceError(f"{path}: cannot be decoded as a mask")
    return mask


class FaceFolder:
    """Source faces with face masks read from a folder (see the module docstring for layouts).

    Args:
        root: the folder; None (an unset ``P3M_CP_SOURCE``) is refused with what to set.
        layout: ``celebamask_hq`` or ``folders``.
        image_dir: the image folder of the ``folders`` layout.

    Raises:
        FaceSourceError: the folder lacks the layout's sub-folders or holds no face.
    """

    def __init__(
        self,
        root: str | Path | None,
        layout: Literal["celebamask_hq", "folders"],
        image_dir: str = "image",
    ) -> None:
        if root is None:
            raise FaceSourceError(
                "P3M-CP needs a folder of public faces with face masks: set "
                "data.copy_paste.source.root=/path/CelebAMask-HQ or export P3M_CP_SOURCE=..."
            )
        self.root = Path(root)
        self.layout = layout
        if layout == "celebamask_hq":
            images, self._masks = self.root / "CelebA-HQ-img", self.root / "CelebAMask-HQ-mask-anno"
        elif layout == "folders":
            images, self._masks = self.root / image_dir, self.root / "facemask"
        else:
            raise ValueError(f"unknown face source layout {layout!r}: celebamask_hq or folders")
        missing = [str(p) for p in (images, self._masks) if not p.is_dir()]
        if missing:
            raise FaceSourceError(
                f"face source {self.root} ({layout} layout) lacks {', '.join(missing)}; see "
                "the README's P3M-CP section for the expected tree"
            )
        self.images = sorted(p for p in images.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not self.images:
            raise FaceSourceError(f"face source {images} holds no image")

    def __len__(self) -> int:
        return len(self.images)

    def _mask_of(self, image_path: Path, shape: tuple[int, int]) -> np.ndarray:
        if self.layout == "folders":
            path = self._masks / f"{image_path.stem}.png"
            if not path.is_file():
                raise FaceSourceError(f"{image_path}: no face mask {path}")
            mask = _read_gray(path)
        else:
            index = int(image_path.stem)
            folder = self._masks / str(index // 2000)
            parts = [folder / f"{index:05d}_{part}.png" for part in CELEBAMASK_FACE_PARTS]
            found = [_read_gray(p) for p in parts if p.is_file()]
            if not found:
                raise FaceSourceError(f"{image_path}: no face part masks in {folder}")
            mask = np.maximum.reduce([np.where(m > 0, 255, 0).astype(np.uint8) for m in found])
        if mask.shape != shape:
            mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
        return mask

    def face(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``index``-th face: ``(H, W, 3)`` uint8 RGB and its ``(H, W)`` uint8 face mask."""
        path = self.images[index]
        image = _read_rgb(path)
        return image, self._mask_of(path, image.shape[:2])


@dataclass(frozen=True)
class FaceGeometry:
    """Where a face is: the centroid ``(x, y)`` of its mask and its size ``sqrt(area)``."""

    center: tuple[float, float]
    size: float


def face_geometry(mask: np.ndarray) -> FaceGeometry | None:
    """Centroid and size of the nonzero pixels of ``mask``; None when there are none."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return FaceGeometry((float(xs.mean()), float(ys.mean())), math.sqrt(xs.size))


def align_face(
    source: np.ndarray,
    source_mask: np.ndarray,
    target_mask: np.ndarray,
    rng: np.random.Generator,
    *,
    rotation: float = 30.0,
    scale_range: tuple[float, float] = (0.8, 1.2),
    flip_prob: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp a source image so that its face lies on the target's face region.

    The similarity transform maps the source face centre onto the target face centre and scales
    by the ratio of face sizes times a random factor from ``scale_range``, rotates by a random
    angle in ``[-rotation, rotation]`` degrees about that centre and, with ``flip_prob``, mirrors
    the source horizontally (about its face centre) first.

    Args:
        source: ``(h, w, 3)`` uint8 RGB source image.
        source_mask: ``(h, w)`` source face mask (nonzero on the face).
        target_mask: ``(H, W)`` target face mask; the output has this size.
        rng: the only source of randomness.
        rotation: largest rotation in degrees.
        scale_range: random scale factor range on top of the size match.
        flip_prob: probability of a horizontal flip.

    Returns:
        ``(H, W, 3)`` uint8 aligned source (black outside the warped source) and the
        ``(H, W)`` uint8 warped source face mask (0/255).

    Raises:
        ValueError: a mask without any face pixel.
    """
    src, dst = face_geometry(source_mask), face_geometry(target_mask)
    if src is None or dst is None:
        raise ValueError("align_face needs a nonzero source and target face mask")
    angle = float(rng.uniform(-rotation, rotation))
    scale = dst.size / src.size * float(rng.uniform(*scale_range))
    flip = bool(rng.random() < flip_prob)
    matrix = cv2.getRotationMatrix2D(src.center, angle, scale)
    if flip:
        # Mirror about the face centre's column before rotating and scaling.
        mirror = np.array([[-1.0, 0.0, 2 * src.center[0]], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        matrix = matrix @ mirror
    matrix[:, 2] += np.array(dst.center) - np.array(src.center)
    height, width = target_mask.shape
    aligned = cv2.warpAffine(source, matrix, (width, height), flags=cv2.INTER_LINEAR)
    aligned_mask = cv2.warpAffine(
        np.where(source_mask > 0, 255, 0).astype(np.uint8),
        matrix,
        (width, height),
        flags=cv2.INTER_NEAREST,
    )
    return aligned, aligned_mask


def paste(image: np.ndarray, aligned: np.ndarray, target_mask: np.ndarray) -> np.ndarray:
    """``image`` with the pixels inside ``target_mask`` taken from ``aligned``; a new array."""
    out = image.copy()
    inside = target_mask > 0
    out[inside] = aligned[inside]
    return out


@dataclass(frozen=True)
class CopyPasteResult:
    """One sample after P3M-ICP.

    Attributes:
        image, fg, bg: ``(H, W, 3)`` uint8; equal to the inputs outside the target face mask.
        aligned: ``(H, W, 3)`` uint8 aligned source (what FCP pastes into features).
        pasted: whether a face was pasted (False: drawn out by the probability, or no face mask).
    """

    image: np.ndarray
    fg: np.ndarray
    bg: np.ndarray
    aligned: np.ndarray
    pasted: bool


class ImageCopyPaste:
    """P3M-ICP: with probability ``prob``, paste an aligned source face into the face region.

    Args:
        source: the faces to paste (`FaceFolder`, or the training set's own images).
        prob: probability per sample.
        rotation, scale_range, flip_prob: the alignment's augmentation (`align_face`).
    """

    def __init__(
        self,
        source: FaceSource,
        prob: float = 0.5,
        rotation: float = 30.0,
        scale_range: Sequence[float] = (0.8, 1.2),
        flip_prob: float = 0.5,
    ) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"copy-paste prob must be in [0, 1], got {prob}")
        self.source = source
        self.prob = prob
        self.rotation = rotation
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.flip_prob = flip_prob

    def __call__(
        self,
        image: np.ndarray,
        fg: np.ndarray,
        bg: np.ndarray,
        face_mask: np.ndarray | None,
        rng: np.random.Generator,
    ) -> CopyPasteResult:
        """Paste (or not) into one full-size training sample.

        Args:
            image, fg, bg: ``(H, W, 3)`` uint8 RGB (image already obfuscated where the setting
                asks for it).
            face_mask: ``(H, W)`` uint8 target face mask, or None (nothing is pasted).
            rng: the sample's generator; one draw decides, more draw the source and alignment.
        """
        unchanged = CopyPasteResult(image, fg, bg, np.zeros_like(image), False)
        # Probability 0 draws nothing, so a run with it is bit-identical to one without CP.
        if self.prob == 0 or face_mask is None or not np.any(face_mask):
            return unchanged
        if rng.random() >= self.prob:
            return unchanged
        source, source_mask = self.source.face(int(rng.integers(len(self.source))))
        if not np.any(source_mask):
            return unchanged
        aligned, _ = align_face(
            source,
            source_mask,
            face_mask,
            rng,
            rotation=self.rotation,
            scale_range=self.scale_range,
            flip_prob=self.flip_prob,
        )
        # Pasting into F and B as well keeps image = alpha F + (1 - alpha) B exact.
        return CopyPasteResult(
            paste(image, aligned, face_mask),
            paste(fg, aligned, face_mask),
            paste(bg, aligned, face_mask),
            aligned,
            True,
        )
