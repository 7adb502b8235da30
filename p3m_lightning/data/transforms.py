"""The P3M-Net training transform (docs/p3m-net.md §5) and the conversion to batch tensors.

Plain numpy/OpenCV on ``HxWx3`` RGB and ``HxW`` uint8 arrays, so it can be tested and reused
without a dataset. One training sample goes through::

    kernel k ~ U{15..30} -> crop side c -> crop corner (a transition pixel or any pixel)
    -> crop -> horizontal flip -> bilinear resize of every map (trimap included) to size x size

`P3MTrainTransform` returns uint8 maps; `to_tensor_sample` normalises them into the training
batch vocabulary. The other methods' own training augmentations (``data/transform=<method>``)
live in their method folders (``p3m_lightning/methods/<method>/transform.py``) and keep the
same call and the same uint8 maps, checked by `check_sample`.

Optional extra augmentations (`Augmentation`, albumentations) run after the
published steps; without them the transform is exactly the published one. All randomness comes
from the ``numpy.random.Generator`` passed in, so a sample is a pure function of its inputs and
the generator's seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch

from p3m_lightning.data.trimap import trimap_window
from p3m_lightning.normalization import IMAGENET_MEAN, IMAGENET_STD

# (x / 255 - mean) / std for every uint8 value, shaped (1, 256, 3) as cv2.LUT wants it. Each entry
# is computed with the same float32 operations as the reference's ToTensor-style division and
# transforms.Normalize, so the table lookup is bit-identical to that arithmetic, only faster.
_NORMALISE_LUT = np.ascontiguousarray(
    (
        (np.arange(256, dtype=np.float32)[:, None] / 255 - np.float32(IMAGENET_MEAN))
        / np.float32(IMAGENET_STD)
    )[None]
)

MAP_KEYS = ("image", "alpha", "trimap", "fg", "bg")


def check_sample(
    image: np.ndarray,
    alpha: np.ndarray,
    fg: np.ndarray,
    bg: np.ndarray,
    extra: Mapping[str, np.ndarray] | None,
) -> dict[str, np.ndarray]:
    """Check one training sample's maps and return its ``extra`` maps as a dict.

    Args:
        image, fg, bg: (H, W, 3) uint8 RGB.
        alpha: (H, W) uint8.
        extra: More maps of the same height and width, or None.

    Raises:
        ValueError: a map of another shape.
    """
    h, w = alpha.shape[:2]
    if alpha.ndim != 2 or any(a.shape != (h, w, 3) for a in (image, fg, bg)):
        raise ValueError(
            "image, fg and bg must be HxWx3 and alpha HxW of the same size, got "
            f"{image.shape}, {fg.shape}, {bg.shape} and {alpha.shape}"
        )
    extra = dict(extra or {})
    wrong = {k: v.shape for k, v in extra.items() if v.shape[:2] != (h, w)}
    if wrong:
        raise ValueError(f"extra maps must be {h}x{w} like alpha, got {wrong}")
    return extra


class P3MTrainTransform:
    """Random trimap kernel, crop, flip and resize of one training sample (docs/p3m-net.md §5).

    The reference draws the crop side c from ``crop_sizes`` and uses 512 whenever
    ``c >= min(h, w)``. That rule is kept in a general form: a side that does not fit falls back
    to the smallest crop size, and if even that does not fit, the crop is the largest square that
    does (the reference would slice a non-square crop or fail on such small images).

    The crop's top-left corner is, with probability ``transition_prob``, a random unknown (128)
    pixel of ``trimap[:h - c, :w - c]`` and otherwise any pixel of that region (also when it holds
    no unknown pixel). The reference's region leaves out the last valid corner ``h - c``; that is
    kept, except where the crop spans a whole side and 0 is the only corner.

    Args:
        size: Side of the square output maps (512 in the published recipe).
        crop_sizes: Crop sides to draw from, uniformly.
        kernel_range: Inclusive ``(low, high)`` of the trimap kernel size (``random.randint(15,
            30)`` in the reference).
        flip_prob: Probability of a horizontal flip.
        transition_prob: Probability that the crop corner is drawn from the unknown region.
        augment: Extra augmentations applied to the resized maps (`Augmentation`); None (the
            published recipe) draws nothing more from the generator.
    """

    def __init__(
        self,
        size: int = 512,
        crop_sizes: Sequence[int] = (512, 768, 1024),
        kernel_range: tuple[int, int] = (15, 30),
        flip_prob: float = 0.5,
        transition_prob: float = 0.5,
        augment: Augmentation | None = None,
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
        self.augment = augment

    def crop_side(self, drawn: int, height: int, width: int) -> int:
        """The crop side actually used for a drawn side on an ``height x width`` image."""
        shorter = min(height, width)
        if drawn < shorter:
            return drawn
        return min(min(self.crop_sizes), shorter)

    def transition_pixels(
        self, alpha: np.ndarray, kernel_size: int, region: tuple[int, int]
    ) -> np.ndarray:
        """Flat indices (in ``region``) of the pixels a transition crop corner is drawn from:
        the unknown (128) pixels of ``trimap[:region[0], :region[1]]``."""
        window = trimap_window(alpha, kernel_size, (0, region[0]), (0, region[1]))
        return np.flatnonzero(window == 128)

    def __call__(
        self,
        image: np.ndarray,
        alpha: np.ndarray,
        fg: np.ndarray,
        bg: np.ndarray,
        rng: np.random.Generator,
        extra: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Transform one sample.

        Args:
            image: (H, W, 3) uint8 RGB.
            alpha: (H, W) uint8 alpha in [0, 255].
            fg: (H, W, 3) uint8 RGB foreground F.
            bg: (H, W, 3) uint8 RGB background B.
            rng: The only source of randomness.
            extra: More maps of the same height and width, cropped, flipped and resized with
                the others (e.g. P3M-CP's aligned source and face mask); (H, W, 3) images are
                resized bilinearly, (H, W) masks with nearest neighbour (they stay binary).
                They draw nothing from ``rng``.

        Returns:
            ``image``, ``fg``, ``bg``: (size, size, 3) uint8; ``alpha``: (size, size) uint8;
            ``trimap``: (size, size) uint8, 0/128/255 blurred by the resize into in-between
            values; and each ``extra`` map under its own key.
        """
        extra = check_sample(image, alpha, fg, bg, extra)
        h, w = alpha.shape
        kernel_size = int(rng.integers(self.kernel_range[0], self.kernel_range[1] + 1))
        c = self.crop_side(self.crop_sizes[int(rng.integers(len(self.crop_sizes)))], h, w)
        region = (max(h - c, 1), max(w - c, 1))
        y = x = None
        if rng.random() < self.transition_prob:
            unknown = self.transition_pixels(alpha, kernel_size, region)
            if unknown.size:
                y, x = divmod(int(unknown[rng.integers(unknown.size)]), region[1])
        if y is None:
            y, x = int(rng.integers(region[0])), int(rng.integers(region[1]))
        flip = rng.random() < self.flip_prob

        crops = {
            "image": image[y : y + c, x : x + c],
            "alpha": alpha[y : y + c, x : x + c],
            "trimap": trimap_window(alpha, kernel_size, (y, y + c), (x, x + c)),
            "fg": fg[y : y + c, x : x + c],
            "bg": bg[y : y + c, x : x + c],
        }
        crops.update({key: full[y : y + c, x : x + c] for key, full in extra.items()})
        out = {}
        for key, crop in crops.items():
            if flip:
                crop = cv2.flip(crop, 1)
            nearest = key in extra and crop.ndim == 2
            interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
            out[key] = cv2.resize(crop, (self.size, self.size), interpolation=interpolation)
        return out if self.augment is None else self.augment(out, rng)


class Augmentation:
    """Extra albumentations transforms, applied consistently to all maps of one training sample.

    Image, F and B are albumentations "image" targets: a photometric transform (colour jitter,
    JPEG quality, noise, blur, ...) applies the same drawn parameters (and the same noise) to the
    three, so ``image = alpha F + (1 - alpha) B`` keeps holding for linear changes. Alpha and the
    trimap are "mask" targets: geometric transforms move them with the image, resampled
    bilinearly as the published resize does; photometric transforms leave them alone. Every
    draw is seeded from the sample's generator, so a sample stays a function of its seed.

    Args:
        transforms: albumentations transforms, applied in order (``albumentations.Compose``).
    """

    def __init__(self, transforms: Sequence[Any]) -> None:
        import albumentations

        self.compose = albumentations.Compose(
            list(transforms),
            additional_targets={"fg": "image", "bg": "image", "trimap": "mask"},
            mask_interpolation=cv2.INTER_LINEAR,
        )

    def __call__(
        self, maps: dict[str, np.ndarray], rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Augment ``P3MTrainTransform``'s uint8 maps (same keys and shapes out).

        Maps beyond the five of the published transform (its ``extra``) follow too: (H, W, 3)
        ones as images, (H, W) ones as masks.
        """
        extra = {k: v for k, v in maps.items() if k not in MAP_KEYS}
        new = {k: ("image" if v.ndim == 3 else "mask") for k, v in extra.items()}
        if new.keys() - self.compose.additional_targets.keys():
            self.compose.add_targets(new)
        self.compose.set_random_seed(int(rng.integers(2**31 - 1)))
        out = self.compose(
            image=maps["image"],
            fg=maps["fg"],
            bg=maps["bg"],
            mask=maps["alpha"],
            trimap=maps["trimap"],
            **extra,
        )
        out["alpha"] = out.pop("mask")
        return {key: out[key] for key in maps}


def normalise_image(image: np.ndarray) -> np.ndarray:
    """ImageNet-normalise an RGB image: ``(image / 255 - mean) / std`` per channel.

    Args:
        image: (H, W, 3) uint8 RGB.

    Returns:
        (3, H, W) float32.
    """
    return np.ascontiguousarray(cv2.LUT(image, _NORMALISE_LUT).transpose(2, 0, 1))


def to_tensor_sample(maps: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Turn `P3MTrainTransform`'s uint8 maps into training-sample tensors.

    Args:
        maps: The transform's output (``image``, ``alpha``, ``trimap``, ``fg``, ``bg``, and any
            ``extra`` maps).

    Returns:
        ``image``, ``fg``, ``bg``: (3, S, S) float32, ImageNet-normalised;
        ``alpha``: (1, S, S) float32 in [0, 1]; ``trimap``: (1, S, S) float32 in [0, 255]; an
        extra (S, S, 3) map normalised like the image, an extra (S, S) mask as (1, S, S)
        float32 in [0, 1].
    """
    sample = {key: torch.from_numpy(normalise_image(maps[key])) for key in ("image", "fg", "bg")}
    sample["alpha"] = torch.from_numpy(maps["alpha"][None].astype(np.float32) / 255)
    sample["trimap"] = torch.from_numpy(maps["trimap"][None].astype(np.float32))
    out = {key: sample[key] for key in MAP_KEYS}
    for key, value in maps.items():
        if key not in out:
            out[key] = torch.from_numpy(
                normalise_image(value) if value.ndim == 3 else value[None].astype(np.float32) / 255
            )
    return out
