"""GCA-Matting's training augmentation (Yaoyi-Li/GCA-Matting@5a999be,
``dataloader/data_generator.py``, ``CONFIG.data.augmentation = True``), as
``data/transform=gca``.

In the authors' order (``data_generator.py:446-453`` and ``_composite_fg``, ``:508-529``):

0. with probability 0.25, F and alpha resized to 640 x 640 (nearest) (``:525-527``);
1. ``RandomAffine(degrees=30, scale=[0.8, 1.25], shear=10, flip=0.5)`` of F and alpha
   (``:70-208``): rotation U(-30, 30) degrees only when the longer side is at least 1024, else
   none (``:151-154``); x and y scales drawn independently from U(0.8, 1.25); shear
   U(-10, 10) degrees; x and y each mirrored with probability 0.5 (vertical flips too); no
   translation; nearest interpolation, about the centre ``(w / 2 + 0.5, h / 2 + 0.5)``;
2. ``GenTrimap`` (``:393-412``): foreground = ``alpha == 1`` eroded, background =
   ``alpha == 0`` eroded, elliptical kernels of sizes drawn independently from 1..29;
   128 elsewhere;
3. ``RandomCrop(512)`` (``:262-326``): B resized (bicubic) to F's size; an image with a side
   <= 512 enlarged by ``1.1 x 512 / shorter side`` until both sides exceed 512 (F, alpha,
   trimap nearest; B bicubic); the corner is 4 x a random unknown pixel of the 1/4-size
   trimap (nearest) inside a margin of 256, i.e. the crop is centred on it (a random corner
   when there are fewer than 10 such pixels); crop 512 x 512, no resize (an image with no
   unknown pixel at all is resized whole to 512 instead);
4. ``RandomJitter`` of F (``:210-243``), skipped when the crop's alpha is all 0: hue +
   ``randint(-40, 40)`` degrees (mod 360); saturation and value each shifted by
   ``U(-1, 1) x (1.1 - mean over alpha > 0) / 10`` and reflected into [0, 1];
5. ``Composite`` (``:415-427``): the training image is ``alpha F + (1 - alpha) B``.

Left out: the official sample pairs each foreground with a COCO background and, with
probability 0.5, merges a second random foreground into it (``:508-523``): both need other
samples than the one transformed. On P3M-10k, F and B are each image's own (``prepare_fgbg``
files), so the composite of step 5 is close to the photo, with F moved by step 1. The
composite is rounded to 8 bits here (the official one stays float: at most 0.5 / 255 apart).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import cv2
import numpy as np

from p3m_lightning.data.transforms import check_sample

__all__ = ["GCATrainTransform", "gca_affine_matrix", "gca_trimap"]


def gca_affine_matrix(
    center: tuple[float, float],
    angle: float,
    scale: tuple[float, float],
    shear: float,
    flip: tuple[int, int],
) -> np.ndarray:
    """The inverse affine matrix of ``RandomAffine._get_inverse_affine_matrix`` (no
    translation): flip, then scale, rotation and shear about ``center``.

    Args:
        center: ``(x, y)`` of the centre.
        angle: Rotation in degrees.
        scale: ``(sx, sy)``.
        shear: Shear in degrees.
        flip: ``(fx, fy)``, each 1 or -1.

    Returns:
        (2, 3) float64, for ``cv2.warpAffine`` with ``WARP_INVERSE_MAP``.
    """
    a, s = math.radians(angle), math.radians(shear)
    sx, sy = flip[0] / scale[0], flip[1] / scale[1]
    d = math.cos(a + s) * math.cos(a) + math.sin(a + s) * math.sin(a)
    m = [math.cos(a) * sx, math.sin(a + s) * sx, 0.0, -math.sin(a) * sy, math.cos(a + s) * sy, 0.0]
    m = [v / d for v in m]
    m[2] += m[0] * -center[0] + m[1] * -center[1] + center[0]
    m[5] += m[3] * -center[0] + m[4] * -center[1] + center[1]
    return np.array(m).reshape(2, 3)


def gca_trimap(alpha: np.ndarray, fg_size: int, bg_size: int) -> np.ndarray:
    """``GenTrimap``'s trimap of an 8-bit alpha for the given erosion kernel sizes."""
    ellipse = cv2.MORPH_ELLIPSE
    fg = cv2.erode(
        (alpha == 255).astype(np.uint8), cv2.getStructuringElement(ellipse, (fg_size,) * 2)
    )
    bg = cv2.erode(
        (alpha == 0).astype(np.uint8), cv2.getStructuringElement(ellipse, (bg_size,) * 2)
    )
    trimap = np.full_like(alpha, 128)
    trimap[fg == 1] = 255
    trimap[bg == 1] = 0
    return trimap


class GCATrainTransform:
    """GCA's affine, trimap, crop, colour jitter and composition (see the module docstring).

    Args:
        size: Crop side, also the output side (``CONFIG.data.crop_size = 512``).
        degrees: Rotation range, +-degrees.
        rotate_min_side: Rotation only for images whose longer side is at least this.
        scale_range: Range of the independent x and y scales.
        shear: Shear range, +-degrees.
        flip_prob: Probability of each of the x and y mirrorings.
        resize_prob: Probability of resizing F and alpha to ``resize_side`` first.
        resize_side: That side (640).
        kernel_range: ``(low, high)`` of the trimap's erosion kernel sizes, high exclusive
            (``np.random.randint(1, 30)``).
        hue_range: ``(low, high)`` of the hue shift in degrees, high exclusive.
        min_unknown: Fewer unknown pixels (of the 1/4-size trimap) than this give a random
            crop corner (10).
    """

    def __init__(
        self,
        size: int = 512,
        degrees: float = 30.0,
        rotate_min_side: int = 1024,
        scale_range: tuple[float, float] = (0.8, 1.25),
        shear: float = 10.0,
        flip_prob: float = 0.5,
        resize_prob: float = 0.25,
        resize_side: int = 640,
        kernel_range: tuple[int, int] = (1, 30),
        hue_range: tuple[int, int] = (-40, 40),
        min_unknown: int = 10,
    ) -> None:
        if size < 4:
            raise ValueError(f"size must be at least 4, got {size}")
        if not 1 <= kernel_range[0] < kernel_range[1]:
            raise ValueError(f"kernel_range must be 1 <= low < high, got {kernel_range}")
        self.size = size
        self.degrees = degrees
        self.rotate_min_side = rotate_min_side
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.shear = shear
        self.flip_prob = flip_prob
        self.resize_prob = resize_prob
        self.resize_side = resize_side
        self.kernel_range = (int(kernel_range[0]), int(kernel_range[1]))
        self.hue_range = (int(hue_range[0]), int(hue_range[1]))
        self.min_unknown = min_unknown

    def __call__(
        self,
        image: np.ndarray,
        alpha: np.ndarray,
        fg: np.ndarray,
        bg: np.ndarray,
        rng: np.random.Generator,
        extra: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Transform one sample (arguments and outputs as `P3MTrainTransform`'s; ``image`` is
        replaced by the composite of the transformed F over B).

        Returns:
            ``image``, ``fg``, ``bg``: (size, size, 3) uint8; ``alpha``: (size, size) uint8;
            ``trimap``: (size, size) uint8 with values 0 / 128 / 255 only.

        Raises:
            ValueError: ``extra`` maps (P3M-CP's feature level needs an image-only network).
        """
        if check_sample(image, alpha, fg, bg, extra):
            raise ValueError("the GCA transform takes no extra maps (cp=fcp)")
        if rng.random() < self.resize_prob:
            side = (self.resize_side, self.resize_side)
            fg = cv2.resize(fg, side, interpolation=cv2.INTER_NEAREST)
            alpha = cv2.resize(alpha, side, interpolation=cv2.INTER_NEAREST)
        fg, alpha = self.affine(fg, alpha, rng)
        fg_size, bg_size = (int(k) for k in rng.integers(*self.kernel_range, size=2))
        trimap = gca_trimap(alpha, fg_size, bg_size)
        fg, alpha, trimap, bg = self.crop(fg, alpha, trimap, bg, rng)
        if alpha.any():
            fg = self.jitter(fg, alpha, rng)
        a = alpha[..., None].astype(np.float32) / 255
        composite = fg.astype(np.float32) * a + bg.astype(np.float32) * (1 - a)
        return {
            "image": np.clip(np.rint(composite), 0, 255).astype(np.uint8),
            "alpha": alpha,
            "trimap": trimap,
            "fg": fg,
            "bg": bg,
        }

    def affine(
        self, fg: np.ndarray, alpha: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``RandomAffine`` of F and alpha (nearest), as the module docstring says."""
        rows, cols = alpha.shape
        rotate = max(rows, cols) >= self.rotate_min_side
        angle = rng.uniform(-self.degrees, self.degrees) if rotate else 0.0
        scale = (rng.uniform(*self.scale_range), rng.uniform(*self.scale_range))
        shear = rng.uniform(-self.shear, self.shear)
        flip = tuple(int(f) for f in np.where(rng.random(2) < self.flip_prob, -1, 1))
        matrix = gca_affine_matrix((cols * 0.5 + 0.5, rows * 0.5 + 0.5), angle, scale, shear, flip)
        flags = cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP
        return (
            cv2.warpAffine(fg, matrix, (cols, rows), flags=flags),
            cv2.warpAffine(alpha, matrix, (cols, rows), flags=flags),
        )

    def crop(
        self,
        fg: np.ndarray,
        alpha: np.ndarray,
        trimap: np.ndarray,
        bg: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``RandomCrop``: F, alpha, trimap and B cropped to ``size`` (see the module
        docstring)."""
        size, margin = self.size, self.size // 2
        h, w = trimap.shape
        bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_CUBIC)
        if w < size + 1 or h < size + 1:
            ratio = 1.1 * size / h if h < w else 1.1 * size / w
            while h < size + 1 or w < size + 1:
                shape = (int(w * ratio), int(h * ratio))
                fg = cv2.resize(fg, shape, interpolation=cv2.INTER_NEAREST)
                alpha = cv2.resize(alpha, shape, interpolation=cv2.INTER_NEAREST)
                trimap = cv2.resize(trimap, shape, interpolation=cv2.INTER_NEAREST)
                bg = cv2.resize(bg, shape, interpolation=cv2.INTER_CUBIC)
                h, w = trimap.shape
        if not (trimap == 128).any():
            side = (size, size)
            return (
                cv2.resize(fg, side, interpolation=cv2.INTER_NEAREST),
                cv2.resize(alpha, side, interpolation=cv2.INTER_NEAREST),
                cv2.resize(trimap, side, interpolation=cv2.INTER_NEAREST),
                cv2.resize(bg, side, interpolation=cv2.INTER_CUBIC),
            )
        small = cv2.resize(trimap, (w // 4, h // 4), interpolation=cv2.INTER_NEAREST)
        window = small[margin // 4 : (h - margin) // 4, margin // 4 : (w - margin) // 4]
        unknown = np.flatnonzero(window == 128)
        if unknown.size < self.min_unknown:
            top, left = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
        else:
            # The window's index, not the image's: the crop is centred on the pixel.
            y, x = divmod(int(unknown[rng.integers(unknown.size)]), window.shape[1])
            top, left = 4 * y, 4 * x
        box = (slice(top, top + size), slice(left, left + size))
        return fg[box], alpha[box], trimap[box], bg[box]

    def jitter(self, fg: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``RandomJitter`` of F's hue, saturation and value (see the module docstring)."""
        hsv = cv2.cvtColor(fg.astype(np.float32) / 255, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = np.remainder(hsv[..., 0] + int(rng.integers(*self.hue_range)), 360)
        present = alpha > 0
        for channel in (1, 2):
            bar = 1.1 - hsv[..., channel][present].mean()
            value = np.abs(hsv[..., channel] + (rng.random() * bar / 5 - bar / 10))
            hsv[..., channel] = np.where(value > 1, 2 - value, value)
        rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
