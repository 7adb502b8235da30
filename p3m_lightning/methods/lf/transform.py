"""LF's training augmentation as its authors describe it, as ``data/transform=lf``.

The authors' README (yunkezhang/FusionMatting ``README.md:48``) names two steps: "random
rotation -15 to +15 degrees, and 512x512, 800x800 for cropping". Everything else is this
project's choice, labelled in ``conf/model/lf.yaml``'s ``recipe.sources``:

1. every map turned by one angle drawn uniformly from [-15, 15] degrees about the image centre,
   bilinearly (2-D extra masks by nearest neighbour), the borders mirrored (``reflect_101``) so
   that no empty corner enters the crop and ``alpha F + (1 - alpha) B = image`` still holds;
2. then P3M-Net's steps with LF's crop sides: trimap of the turned alpha (kernel 15..30), crop
   side 512 or 800 (512 when 800 does not fit), corner on an unknown pixel with probability
   0.5, resized to ``size`` (512: the README gives no output side); no flip (the README
   names none).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from p3m_lightning.data.transforms import Augmentation, P3MTrainTransform, check_sample

__all__ = ["LFTrainTransform", "rotate_maps"]


def rotate_maps(maps: Mapping[str, np.ndarray], degrees: float) -> dict[str, np.ndarray]:
    """Every map turned by ``degrees`` (counter-clockwise) about the image centre.

    Args:
        maps: ``(H, W)`` or ``(H, W, 3)`` uint8 maps of one size; 2-D maps whose key is not
            ``alpha`` are masks and are resampled by nearest neighbour, the others bilinearly.
        degrees: The angle.

    Returns:
        The turned maps, same keys, sizes and dtypes; borders mirrored.
    """
    first = next(iter(maps.values()))
    h, w = first.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
    out = {}
    for key, value in maps.items():
        mask = value.ndim == 2 and key != "alpha"
        interpolation = cv2.INTER_NEAREST if mask else cv2.INTER_LINEAR
        out[key] = cv2.warpAffine(
            value, matrix, (w, h), flags=interpolation, borderMode=cv2.BORDER_REFLECT_101
        )
    return out


class LFTrainTransform(P3MTrainTransform):
    """A random rotation, then P3M-Net's crop and resize with LF's crop sides (see the module
    docstring).

    Args:
        size: Output side (512, our choice).
        crop_sizes: Crop sides drawn uniformly ((512, 800), the README's).
        max_degrees: Angles are drawn uniformly from ``[-max_degrees, max_degrees]`` (15).
        kernel_range: Trimap kernel, as P3M-Net's.
        flip_prob: Probability of a horizontal flip (0: the README names none).
        transition_prob: Probability that the crop corner is drawn from the unknown region.
        augment: Extra augmentations after these steps (None: LF's).
    """

    def __init__(
        self,
        size: int = 512,
        crop_sizes: Sequence[int] = (512, 800),
        max_degrees: float = 15.0,
        kernel_range: tuple[int, int] = (15, 30),
        flip_prob: float = 0.0,
        transition_prob: float = 0.5,
        augment: Augmentation | None = None,
    ) -> None:
        if max_degrees < 0:
            raise ValueError(f"max_degrees must be >= 0, got {max_degrees}")
        super().__init__(
            size=size,
            crop_sizes=crop_sizes,
            kernel_range=kernel_range,
            flip_prob=flip_prob,
            transition_prob=transition_prob,
            augment=augment,
        )
        self.max_degrees = float(max_degrees)

    def __call__(
        self,
        image: np.ndarray,
        alpha: np.ndarray,
        fg: np.ndarray,
        bg: np.ndarray,
        rng: np.random.Generator,
        extra: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Transform one sample (arguments and outputs as `P3MTrainTransform`'s); the angle is
        the first draw from ``rng``, the crop's follow."""
        extra = check_sample(image, alpha, fg, bg, extra)
        degrees = float(rng.uniform(-self.max_degrees, self.max_degrees))
        turned = rotate_maps({"image": image, "alpha": alpha, "fg": fg, "bg": bg, **extra}, degrees)
        rest = {key: turned[key] for key in extra}
        return super().__call__(
            turned["image"], turned["alpha"], turned["fg"], turned["bg"], rng, rest or None
        )
