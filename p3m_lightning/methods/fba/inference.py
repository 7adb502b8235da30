"""FBA Matting's own test procedure (the official ``demo.py`` ``pred()`` with the inputs of
``dataloader.PredDataset``), on the CPU with OpenCV where the script uses OpenCV."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from p3m_lightning.inference import (
    MAX_SIDE,
    InferenceStrategy,
    capped_inputs,
    check_inputs,
    check_quantize,
    input_divisor,
    quantize,
    resize,
)
from p3m_lightning.methods.fba.blocks import CLICK_SIGMAS
from p3m_lightning.models.trimap_guided import trimap_guided
from p3m_lightning.normalization import IMAGENET_MEAN, IMAGENET_STD, rgb8

__all__ = ["FBAResize", "fba_encodings", "wrap_to_uint8"]


def wrap_to_uint8(x: np.ndarray) -> np.ndarray:
    """``x.astype(np.uint8)`` as numpy computes it on x86-64: truncation toward zero, then the
    low 8 bits (-5.1 -> 251, 256.3 -> 0).

    The official script casts a Lanczos-resized trimap, which overshoots [0, 1], this way.
    Out of range, that cast is undefined in C and saturates on ARM (-5.1 -> 0); the explicit
    arithmetic gives the x86-64 result, the one the official figures came from, everywhere.
    """
    return (np.trunc(x).astype(np.int64) % 256).astype(np.uint8)


def fba_encodings(
    rgb: np.ndarray, levels: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The official network inputs at ``size``: image, two-channel trimap and distance
    features ("clicks").

    As the script (``demo.py`` ``scale_input``, ``networks/transforms.py``): the image in
    [0, 1] and the float two-channel trimap (background = level 0, foreground = level 255,
    every other level unknown) are each resized with Lanczos (``INTER_LANCZOS4``) and not
    re-binarised; each channel ``t`` then gives ``exp(-d^2 / (2 sigma^2))`` of OpenCV's exact
    distance ``d`` to the zero pixels of ``uint8((1 - t) * 255)`` (``wrap_to_uint8``).

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB photo.
        levels: ``(H, W)`` trimap levels in [0, 255].
        size: ``(height, width)`` the network sees.

    Returns:
        ``(H', W', 3)`` image in [0, 1] (with Lanczos ringing) and ``(H', W', 2)`` trimap
        channels, float64; ``(6, H', W')`` distance features, float32 (OpenCV's distances).
    """
    image = rgb.astype(np.float64) / 255.0
    two = np.stack([levels == 0, levels == 255], axis=-1).astype(np.float64)
    if size != levels.shape:
        image = cv2.resize(image, size[::-1], interpolation=cv2.INTER_LANCZOS4)
        two = cv2.resize(two, size[::-1], interpolation=cv2.INTER_LANCZOS4)
    clicks = []
    for k in range(2):
        d = cv2.distanceTransform(
            wrap_to_uint8((1 - two[..., k]) * 255), cv2.DIST_L2, cv2.DIST_MASK_PRECISE
        )
        clicks += [np.exp(-(d**2) / (2 * s**2)) for s in CLICK_SIGMAS]
    return image, two, np.stack(clicks)


class FBAResize(InferenceStrategy):
    """FBA's official test procedure (``demo.py`` ``pred()``).

    The photo (recovered exactly from the normalised tensor, ``rgb8``) and the trimap go
    through ``fba_encodings`` at the next multiple of the network's ``input_divisor`` (8); the
    network runs on them (``FBANet.from_encodings``); its fused alpha is resized back
    *bilinearly*: the script passes ``cv2.INTER_LANCZOS4`` in ``cv2.resize``'s third
    positional slot, ``dst``, so OpenCV uses its default ``INTER_LINEAR``. Then alpha is 0 / 1
    where the trimap is 0 / 255 at full size (soft levels keep the prediction) and, last,
    quantised as the script's ``cv2.imwrite(alpha * 255)`` (rounding).

    The encodings and the resizing run on the CPU with OpenCV, the network on the inputs'
    device; the alpha comes back on that device. An image with a side over ``max_side`` is
    first run at a size capped to it (the script has no cap; the default 1600 leaves
    P3M-500-P untouched).

    Args:
        quantize: ``"round"`` (the official PNG), ``"floor"`` or ``None`` (the float alpha).
        max_side: cap on each side the network sees.
    """

    name = "fba"

    def __init__(self, quantize: str | None = "round", max_side: int = MAX_SIDE) -> None:
        super().__init__(max_side)
        self.quantize = check_quantize(quantize)

    def params(self) -> dict[str, Any]:
        return {"quantize": self.quantize}

    def __call__(self, net: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
        check_inputs(net, inputs)
        if "trimap" not in inputs:
            raise ValueError("FBA's test procedure needs a trimap")
        if not hasattr(net, "from_encodings"):
            raise ValueError(
                f"strategy fba runs FBANet.from_encodings; {type(net).__name__} has none: "
                "choose another strategy (e.g. strategy=trimap_guided)"
            )
        image, trimap = inputs["image"], inputs["trimap"]
        h, w = image.shape[-2:]
        run = capped_inputs(inputs, self.max_side)
        rh, rw = run["image"].shape[-2:]
        d = input_divisor(net)
        size = (-(-rh // d) * d, -(-rw // d) * d)
        levels = torch.round(run["trimap"][0, 0].detach().float()).cpu().numpy()
        rgb01, two, clicks = fba_encodings(rgb8(run["image"]), levels, size)

        def tensor(x: np.ndarray) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(x))[None].float().to(image.device)

        rgb = tensor(rgb01.transpose(2, 0, 1))
        mean = rgb.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = rgb.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        alpha = net.from_encodings(
            (rgb - mean) / std, rgb, tensor(two.transpose(2, 0, 1)), tensor(clicks)
        )[0]
        alpha = alpha[0, 0].detach().float().cpu().numpy()
        if size != (rh, rw):
            alpha = cv2.resize(alpha, (rw, rh), interpolation=cv2.INTER_LINEAR)
        out = torch.from_numpy(alpha)[None, None].to(image.device)
        if (rh, rw) != (h, w):
            out = resize(out, (h, w))
        out = trimap_guided(out, trimap.float())
        return quantize(out, self.quantize)[0, 0]
