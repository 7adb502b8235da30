"""DIM's training augmentation as mmagic configures it (open-mmlab/mmagic@0a560bb,
``configs/dim/dim_stage1-v16_1xb1-1000k_comp1k.py:36-53``; the same pipeline for the three
stages), as ``data/transform=dim``.

In mmagic's order:

1. ``CropAroundUnknown(crop_sizes=[320, 480, 640])`` (``datasets/transforms/crop.py``): a crop
   side drawn uniformly; an image smaller than it is first enlarged (bilinear) by
   ``max(c / h, c / w)``; the crop is centred on a random pixel with ``0 < alpha < 255`` whose
   half-crop margin fits (else on any such pixel, else at the top-left), its corner clipped
   into the image;
2. ``Flip``: horizontal flip with probability 0.5;
3. ``Resize`` of alpha, image, F and B to 320 x 320, bilinear, aspect not kept;
4. ``GenerateTrimap(kernel_size=(1, 30))`` (``datasets/transforms/trimap.py``) on the resized
   alpha: ``erode`` and ``dilate`` with elliptical kernels whose sizes are drawn independently
   from 1..29, one iteration each; 255 where the eroded alpha is 255, 0 where the dilated
   alpha is 0, 128 elsewhere. The trimap is made at the training resolution, so it is exactly
   0 / 128 / 255 (P3M-Net's transform resizes a trimap made at full resolution instead).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from p3m_lightning.data.transforms import check_sample

__all__ = ["DIMTrainTransform", "random_choose_unknown"]


def random_choose_unknown(
    unknown: np.ndarray, crop: int, rng: np.random.Generator
) -> tuple[int, int]:
    """mmagic's ``random_choose_unknown`` (``datasets/transforms/trans_utils.py``): the top-left
    of a ``crop`` square centred on a random unknown pixel.

    Args:
        unknown: (H, W) bool, with H, W >= ``crop``.
        crop: Crop side.
        rng: Source of the draw.

    Returns:
        ``(top, left)`` inside the image.
    """
    h, w = unknown.shape
    delta = crop // 2
    inside = np.zeros_like(unknown)
    inside[delta : h - delta, delta : w - delta] = True
    candidates = np.flatnonzero(unknown & inside)
    if not candidates.size:
        candidates = np.flatnonzero(unknown)
    if candidates.size:
        y, x = divmod(int(candidates[rng.integers(candidates.size)]), w)
    else:
        y = x = delta
    return int(np.clip(y - delta, 0, h - crop)), int(np.clip(x - delta, 0, w - crop))


class DIMTrainTransform:
    """mmagic's DIM pipeline: unknown-centred crop, flip, resize, then the trimap.

    Args:
        size: Output side (320).
        crop_sizes: Crop sides drawn uniformly ((320, 480, 640)).
        kernel_range: ``(low, high)`` of the erosion and dilation kernel sizes, high exclusive
            (``kernel_size=(1, 30)``).
        flip_prob: Probability of a horizontal flip (``Flip``'s ``flip_ratio`` 0.5).
    """

    def __init__(
        self,
        size: int = 320,
        crop_sizes: Sequence[int] = (320, 480, 640),
        kernel_range: tuple[int, int] = (1, 30),
        flip_prob: float = 0.5,
    ) -> None:
        if size < 1 or not crop_sizes or min(crop_sizes) < 1:
            raise ValueError(f"size and crop_sizes must be positive, got {size}, {crop_sizes}")
        if not 1 <= kernel_range[0] < kernel_range[1]:
            raise ValueError(f"kernel_range must be 1 <= low < high, got {kernel_range}")
        self.size = size
        self.crop_sizes = tuple(int(c) for c in crop_sizes)
        self.kernel_range = (int(kernel_range[0]), int(kernel_range[1]))
        self.flip_prob = flip_prob

    def __call__(
        self,
        image: np.ndarray,
        alpha: np.ndarray,
        fg: np.ndarray,
        bg: np.ndarray,
        rng: np.random.Generator,
        extra: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Transform one sample (arguments and outputs as `P3MTrainTransform`'s).

        Returns:
            ``image``, ``fg``, ``bg``: (size, size, 3) uint8; ``alpha``: (size, size) uint8;
            ``trimap``: (size, size) uint8 with values 0 / 128 / 255 only.

        Raises:
            ValueError: ``extra`` maps (P3M-CP's feature level needs an image-only network).
        """
        if check_sample(image, alpha, fg, bg, extra):
            raise ValueError("the DIM transform takes no extra maps (cp=fcp)")
        maps = {"alpha": alpha, "image": image, "fg": fg, "bg": bg}
        c = self.crop_sizes[int(rng.integers(len(self.crop_sizes)))]
        h, w = alpha.shape
        ratio = max(c / h, c / w)
        if ratio > 1:
            h, w = max(int(h * ratio), c), max(int(w * ratio), c)
            maps = {
                k: cv2.resize(v, (w, h), interpolation=cv2.INTER_LINEAR) for k, v in maps.items()
            }
        unknown = (maps["alpha"] > 0) & (maps["alpha"] < 255)
        top, left = random_choose_unknown(unknown, c, rng)
        maps = {k: v[top : top + c, left : left + c] for k, v in maps.items()}
        if rng.random() < self.flip_prob:
            maps = {k: cv2.flip(v, 1) for k, v in maps.items()}
        size = (self.size, self.size)
        maps = {k: cv2.resize(v, size, interpolation=cv2.INTER_LINEAR) for k, v in maps.items()}
        erode_size, dilate_size = (int(k) for k in rng.integers(*self.kernel_range, size=2))
        maps["trimap"] = self.trimap(maps["alpha"], erode_size, dilate_size)
        return maps

    @staticmethod
    def trimap(alpha: np.ndarray, erode_size: int, dilate_size: int) -> np.ndarray:
        """``GenerateTrimap``'s trimap of an 8-bit alpha for the given kernel sizes."""
        ellipse = cv2.MORPH_ELLIPSE
        eroded = cv2.erode(alpha, cv2.getStructuringElement(ellipse, (erode_size, erode_size)))
        dilated = cv2.dilate(alpha, cv2.getStructuringElement(ellipse, (dilate_size, dilate_size)))
        trimap = np.full_like(alpha, 128)
        trimap[eroded >= 255] = 255
        trimap[dilated <= 0] = 0
        return trimap
