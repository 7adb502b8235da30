"""GFM's training augmentation (JizhiziLi/GFM@4b15ee0, RoSTa TT, ORI track), as
``data/transform=gfm``.

In the authors' order (``core/data.py:32-62,83-123``, ``core/config.py:63-64``):

1. trimap of the whole alpha with a fixed elliptical kernel of 25 (``data.py:104,106``;
   ``util.py:232-239``: ``erode(alpha == 255)`` is foreground, ``dilate(alpha > 0)`` minus it
   is unknown; the same rule as P3M-Net's, `generate_trimap`);
2. crop side drawn uniformly from {640, 960, 1280}, the output side (320) when the drawn side
   is not smaller than the image's shorter side (``data.py:39-40``);
3. crop corner: with probability 0.5 a pixel of ``[:h - c, :w - c]`` where the *alpha* equals
   128, else (also when there is none) any pixel of that region (``data.py:43-50``; the
   authors' code passes the alpha where a trimap is meant, ``argv[1]``, so the "transition"
   draw picks pixels of alpha exactly 128: kept as published);
4. horizontal flip with probability 0.5 (``data.py:52``);
5. bilinear resize of every map, the trimap included, to 320 x 320 (``data.py:59``).

GFM's network takes raw 0..255 RGB; `GFMNet` converts the normalised batch itself. The F and
B of the ORI track are closed-form estimates of the training images (``train_ori.sh``,
``fg_generate=closed_form``), as the P3M-10k F and B written by ``prepare_fgbg`` are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from p3m_lightning.data.transforms import Augmentation, P3MTrainTransform

__all__ = ["GFMTrainTransform"]


class GFMTrainTransform(P3MTrainTransform):
    """P3M-Net's crop-flip-resize with GFM's parameters and its two rules of its own: the
    fall-back crop side is the output side, and the transition corner is drawn where alpha
    is 128 (see the module docstring).

    Args:
        size: Output side (320 officially).
        crop_sizes: Crop sides drawn uniformly ((640, 960, 1280) officially).
        kernel_size: Trimap kernel (25 officially, TT).
        flip_prob: Probability of a horizontal flip.
        transition_prob: Probability that the corner is drawn where alpha is 128.
        augment: Extra augmentations after the published steps (None: GFM's pipeline).
    """

    def __init__(
        self,
        size: int = 320,
        crop_sizes: Sequence[int] = (640, 960, 1280),
        kernel_size: int = 25,
        flip_prob: float = 0.5,
        transition_prob: float = 0.5,
        augment: Augmentation | None = None,
    ) -> None:
        super().__init__(
            size=size,
            crop_sizes=crop_sizes,
            kernel_range=(kernel_size, kernel_size),
            flip_prob=flip_prob,
            transition_prob=transition_prob,
            augment=augment,
        )

    def crop_side(self, drawn: int, height: int, width: int) -> int:
        """The drawn side if it is smaller than the shorter side, else the output side
        (``data.py:40``; the largest square that fits when even that does not)."""
        shorter = min(height, width)
        return drawn if drawn < shorter else min(self.size, shorter)

    def transition_pixels(
        self, alpha: np.ndarray, kernel_size: int, region: tuple[int, int]
    ) -> np.ndarray:
        """Flat indices of the pixels of ``alpha[:region[0], :region[1]]`` equal to 128."""
        return np.flatnonzero(alpha[: region[0], : region[1]] == 128)
