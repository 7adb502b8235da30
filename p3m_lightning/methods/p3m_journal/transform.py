"""The journal P3M-Net's training augmentation (ViTAE-Transformer/P3M-Net, 2024 training
release, read in the copy huafeng111/test@ad57594, ``core/data.py:46-153``), as
``data/transform=p3m_journal``.

The conference transform (`P3MTrainTransform`) with two changes, in the authors' order:

1. trimap of the whole alpha, kernel ``randint(15, 30)`` inclusive (``data.py:119-120``);
2. crop side drawn from {512, 768, 1024} (``config_yacs.py:21-22``: 512 x RATIO 1, 1.5, 2),
   512 when it is not smaller than the shorter side (``data.py:58-59``);
3. a *centre* pixel: with probability 0.5 an unknown (128) pixel of the whole trimap, else
   (also when there is none) any pixel (``data.py:62-68``); the crop is centred on it and
   shifted inside the image (``safe_crop``, ``data.py:83-97``) -- the conference transform
   puts the crop's corner there instead;
4. horizontal flip with probability 0.5 (``data.py:71``);
5. bilinear resize of every map to 512 (``data.py:78``);
6. the resized trimap re-quantised: above 180 -> 255, below 50 -> 0, the rest of (0, 255) ->
   128 (``data.py:135-137``) -- the conference transform leaves it blurred.

Extra maps (P3M-CP's aligned source and face mask) follow every step; masks are resized with
nearest neighbour, so they stay binary (the release binarises its face mask at 100,
``data.py:139-140``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from p3m_lightning.data.transforms import check_sample
from p3m_lightning.data.trimap import generate_trimap

__all__ = ["JournalP3MTrainTransform", "requantise_trimap", "safe_crop"]


def safe_crop(center: tuple[int, int], crop: int, shape: tuple[int, int]) -> tuple[int, int, int]:
    """The release's ``safe_crop``: a ``crop`` square centred on ``center``, shifted inside.

    Args:
        center: ``(y, x)``.
        crop: Crop side (limited to the shorter side).
        shape: ``(H, W)``.

    Returns:
        ``(top, left, side)``.
    """
    h, w = shape
    crop = min(h, w, crop)
    top = min(max(center[0] - crop // 2, 0), h - crop)
    left = min(max(center[1] - crop // 2, 0), w - crop)
    return top, left, crop


def requantise_trimap(trimap: np.ndarray, high: int = 180, low: int = 50) -> np.ndarray:
    """Above ``high`` -> 255, below ``low`` -> 0, the rest of (0, 255) -> 128."""
    out = np.where(trimap > high, 255, np.where(trimap < low, 0, trimap))
    return np.where((out > 0) & (out < 255), 128, out).astype(np.uint8)


class JournalP3MTrainTransform:
    """The journal release's trimap, centred crop, flip, resize and re-quantised trimap.

    Args:
        size: Output side (512).
        crop_sizes: Crop sides drawn uniformly ((512, 768, 1024)).
        kernel_range: Inclusive ``(low, high)`` of the trimap kernel ((15, 30)).
        flip_prob: Probability of a horizontal flip.
        transition_prob: Probability that the centre is an unknown pixel.
        quantise: ``(high, low)`` thresholds of the trimap re-quantisation ((180, 50)).
    """

    def __init__(
        self,
        size: int = 512,
        crop_sizes: Sequence[int] = (512, 768, 1024),
        kernel_range: tuple[int, int] = (15, 30),
        flip_prob: float = 0.5,
        transition_prob: float = 0.5,
        quantise: tuple[int, int] = (180, 50),
    ) -> None:
        if size < 1 or not crop_sizes or min(crop_sizes) < 1:
            raise ValueError(f"size and crop_sizes must be positive, got {size}, {crop_sizes}")
        if not 1 <= kernel_range[0] <= kernel_range[1]:
            raise ValueError(f"kernel_range must be 1 <= low <= high, got {kernel_range}")
        self.size = size
        self.crop_sizes = tuple(int(c) for c in crop_sizes)
        self.kernel_range = (int(kernel_range[0]), int(kernel_range[1]))
        self.flip_prob = flip_prob
        self.transition_prob = transition_prob
        self.quantise = (int(quantise[0]), int(quantise[1]))

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
            ``trimap``: (size, size) uint8, 0 / 128 / 255 only; each ``extra`` map.
        """
        extra = check_sample(image, alpha, fg, bg, extra)
        kernel = int(rng.integers(self.kernel_range[0], self.kernel_range[1] + 1))
        trimap = generate_trimap(alpha, kernel)
        h, w = alpha.shape
        drawn = self.crop_sizes[int(rng.integers(len(self.crop_sizes)))]
        crop = drawn if drawn < min(h, w) else self.size
        candidates = np.flatnonzero(trimap == 128) if rng.random() < self.transition_prob else []
        if not len(candidates):
            candidates = np.arange(h * w)
        center = divmod(int(candidates[rng.integers(len(candidates))]), w)
        top, left, crop = safe_crop(center, crop, (h, w))
        flip = rng.random() < self.flip_prob
        maps = {"image": image, "alpha": alpha, "trimap": trimap, "fg": fg, "bg": bg, **extra}
        out = {}
        for key, full in maps.items():
            patch = full[top : top + crop, left : left + crop]
            if flip:
                patch = cv2.flip(patch, 1)
            nearest = key in extra and patch.ndim == 2
            interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
            out[key] = cv2.resize(patch, (self.size, self.size), interpolation=interpolation)
        out["trimap"] = requantise_trimap(out["trimap"], *self.quantise)
        return out
