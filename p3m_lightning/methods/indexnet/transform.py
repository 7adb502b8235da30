"""IndexNet Matting's training augmentation (poppinace/indexnet_matting@4beb06a), as
``data/transform=indexnet``.

In the authors' order (``scripts/hldataset.py``, composed in ``scripts/hltrainval.py:410-418``):

1. trimap of the whole alpha (``hldataset.py:201-211``): foreground ``alpha == 255``, unknown
   ``0 < alpha < 255`` dilated by a Euclidean distance ``<= r``, ``r = randint(1, 20)``
   (1..19 pixels), unknown drawn over foreground;
2. ``RandomCrop(320, [1, 1.5, 2])`` (``hldataset.py:82-137``): an image whose shorter side is
   below 320 is first enlarged so that side is 500 (image, alpha, F, B bicubic; trimap
   nearest); the crop side is drawn uniformly from ``floor(320 x {1, 1.5, 2})`` among those
   smaller than the shorter side; the crop is centred on a random unknown pixel whose crop
   fits inside the image (else on any unknown pixel, shifted inside); a crop larger than 320
   is resized to 320 (bicubic; the trimap nearest, so it stays 0 / 128 / 255);
3. ``RandomFlip``: horizontal flip with probability 0.5 (``hldataset.py:140-151``);
4. ``Normalize`` (``hldataset.py:154-169``): image ImageNet-normalised, alpha, F and B in
   [0, 1] (`to_tensor_sample` does the same).

Where the authors' code would fail, this one goes on: an image without unknown pixels is
cropped around any pixel, and the shorter side's enlargement also applies when it equals the
output side (no drawn side would be smaller).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from p3m_lightning.data.transforms import check_sample

__all__ = ["IndexNetTrainTransform", "indexnet_trimap"]


def indexnet_trimap(alpha: np.ndarray, radius: int) -> np.ndarray:
    """The official training trimap (``hldataset.py:201-211``) of an 8-bit alpha.

    Args:
        alpha: (H, W) uint8.
        radius: Euclidean dilation of the unknown region, in pixels.

    Returns:
        (H, W) uint8: 255 where alpha is 255, 128 within ``radius`` of a pixel with
        ``0 < alpha < 255`` (over the foreground too), 0 elsewhere.
    """
    known = ((alpha == 0) | (alpha == 255)).astype(np.uint8)
    # Distance of each pixel to the nearest unknown one (exact Euclidean, as scipy's EDT).
    distance = cv2.distanceTransform(known, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    trimap = np.where(alpha == 255, 255, 0).astype(np.uint8)
    trimap[distance <= radius] = 128
    return trimap


class IndexNetTrainTransform:
    """IndexNet's online trimap, unknown-centred multi-scale crop and flip.

    Args:
        size: Output side (``--crop-size 320``, ``train.sh``).
        scales: Crop sides as multiples of ``size`` (``SCALES = [1, 1.5, 2]``,
            ``hltrainval.py:61``).
        radius_range: ``(low, high)`` of the trimap's dilation radius, high exclusive as
            ``np.random.randint(1, 20)``.
        enlarge_margin: An image with a shorter side below ``size`` is enlarged so that side
            becomes ``size + enlarge_margin`` (``hldataset.py:101-102``: 180).
        flip_prob: Probability of a horizontal flip (``np.random.randint(2)``: 0.5).
    """

    def __init__(
        self,
        size: int = 320,
        scales: Sequence[float] = (1.0, 1.5, 2.0),
        radius_range: tuple[int, int] = (1, 20),
        enlarge_margin: int = 180,
        flip_prob: float = 0.5,
    ) -> None:
        if size < 1 or not scales or min(scales) < 1:
            raise ValueError(f"size must be positive and scales >= 1, got {size}, {scales}")
        if not 1 <= radius_range[0] < radius_range[1]:
            raise ValueError(f"radius_range must be 1 <= low < high, got {radius_range}")
        self.size = size
        self.scales = tuple(float(s) for s in scales)
        self.radius_range = (int(radius_range[0]), int(radius_range[1]))
        self.enlarge_margin = enlarge_margin
        self.flip_prob = flip_prob

    def crop_sides(self, height: int, width: int) -> list[int]:
        """The crop sides to draw from on an ``height x width`` image (after enlargement)."""
        sides = [math.floor(self.size * s) for s in self.scales]
        return [c for c in sides if c < min(height, width)]

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
            raise ValueError("the IndexNet transform takes no extra maps (cp=fcp)")
        radius = int(rng.integers(*self.radius_range))
        maps = {"image": image, "alpha": alpha, "fg": fg, "bg": bg}
        maps["trimap"] = indexnet_trimap(alpha, radius)
        h, w = alpha.shape
        if min(h, w) <= self.size:
            scale = (self.size + self.enlarge_margin) / min(h, w)
            h, w = math.floor(h * scale), math.floor(w * scale)
            maps = _resize(maps, (h, w))
        sides = self.crop_sides(h, w)
        c = sides[int(rng.integers(len(sides)))]
        top, left = self._corner(maps["trimap"] == 128, c, rng)
        maps = {k: v[top : top + c, left : left + c] for k, v in maps.items()}
        if c != self.size:
            maps = _resize(maps, (self.size, self.size))
        if rng.random() < self.flip_prob:
            maps = {k: cv2.flip(v, 1) for k, v in maps.items()}
        return maps

    @staticmethod
    def _corner(unknown: np.ndarray, c: int, rng: np.random.Generator) -> tuple[int, int]:
        """Top-left of a ``c``-crop centred on an unknown pixel (``hldataset.py:111-128``)."""
        h, w = unknown.shape
        half = math.ceil(c / 2)
        inside = np.zeros_like(unknown)
        inside[half : h - half + 1, half : w - half + 1] = True
        candidates = np.flatnonzero(unknown & inside)
        if candidates.size:
            y, x = divmod(int(candidates[rng.integers(candidates.size)]), w)
            return y - half, x - half
        candidates = np.flatnonzero(unknown)
        if candidates.size:
            y, x = divmod(int(candidates[rng.integers(candidates.size)]), w)
        else:
            y, x = int(rng.integers(h)), int(rng.integers(w))
        top, left = min(max(y - half, 0), h), min(max(x - half, 0), w)
        return min(top, h - c), min(left, w - c)


def _resize(maps: Mapping[str, np.ndarray], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Bicubic resize of the images and alpha, nearest of the trimap (``hldataset.py:48-79``)."""
    size = (shape[1], shape[0])
    return {
        key: cv2.resize(
            value, size, interpolation=cv2.INTER_NEAREST if key == "trimap" else cv2.INTER_CUBIC
        )
        for key, value in maps.items()
    }
