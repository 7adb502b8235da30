"""IndexNet Matting's own test procedure (the official ``scripts/demo.py`` ``inference()``;
``scripts/hltrainval.py`` ``validate()`` does the same arithmetic)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m_lightning.inference import (
    MAX_SIDE,
    InferenceStrategy,
    call_net,
    capped_inputs,
    check_inputs,
    check_quantize,
    input_divisor,
    quantize,
    resize,
)

__all__ = ["IndexNetResize", "nearest_indices"]

UNKNOWN_LEVEL = 128
"""The one trimap level where the official script keeps the network's prediction."""


def nearest_indices(src: int, dst: int, device: torch.device | None = None) -> Tensor:
    """Source index of each of ``dst`` samples, as OpenCV's ``INTER_NEAREST`` picks it.

    OpenCV takes ``floor(x * (1 / (dst / src)))`` in double precision, clamped to the last
    sample; torch's ``nearest`` computes its scale in float32 and picks another column for
    some sizes (200 -> 224: column 140 reads 124 in OpenCV, 125 in torch).

    Returns:
        ``(dst,)`` int64 indices in ``[0, src)``.
    """
    inverse = 1.0 / (dst / src)
    x = torch.arange(dst, dtype=torch.float64, device=device)
    return torch.floor(x * inverse).long().clamp(max=src - 1)


class IndexNetResize(InferenceStrategy):
    """IndexNet's official test procedure (``scripts/demo.py`` ``inference()``).

    Image and trimap are resized up to the next multiple of the network's ``input_divisor``
    (32): the image bicubically (OpenCV ``INTER_CUBIC`` there, torch's bicubic here: equal
    within 5e-5), the trimap by OpenCV's nearest-neighbour rule (``nearest_indices``). The
    network's raw regression (``alpha_raw``) is resized back bicubically, clipped to [0, 1],
    and kept only where the trimap is exactly 128: every other level ``k`` becomes ``k / 255``
    (0 and 255 the known regions; a soft level keeps its own value). ``quantize`` is applied
    last, as the official PNG: its default ``floor`` is the script's ``astype(np.uint8)``.

    An image with a side over ``max_side`` is first run at a size capped to it (the official
    script has no cap; the default 1600 leaves P3M-500-P untouched).

    Args:
        quantize: ``"floor"`` (the official PNG), ``"round"`` or ``None`` (the float alpha).
        max_side: cap on each side the network sees.
    """

    name = "indexnet"

    def __init__(self, quantize: str | None = "floor", max_side: int = MAX_SIDE) -> None:
        super().__init__(max_side)
        self.quantize = check_quantize(quantize)

    def params(self) -> dict[str, Any]:
        return {"quantize": self.quantize}

    def __call__(self, net: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
        check_inputs(net, inputs)
        if "trimap" not in inputs:
            raise ValueError("IndexNet's test procedure needs a trimap")
        h, w = inputs["image"].shape[-2:]
        run = capped_inputs(inputs, self.max_side)
        image, trimap = run["image"], run["trimap"]
        rh, rw = image.shape[-2:]
        d = input_divisor(net)
        size = (-(-rh // d) * d, -(-rw // d) * d)
        if size != (rh, rw):
            image = F.interpolate(image, size=size, mode="bicubic", align_corners=False)
            rows = nearest_indices(rh, size[0], trimap.device)
            cols = nearest_indices(rw, size[1], trimap.device)
            trimap = trimap.index_select(-2, rows).index_select(-1, cols)
        raw = call_net(net, {"image": image, "trimap": trimap})["alpha_raw"].float()
        if size != (rh, rw):
            raw = F.interpolate(raw, size=(rh, rw), mode="bicubic", align_corners=False)
        alpha = raw.clamp(0.0, 1.0)
        if (rh, rw) != (h, w):
            alpha = resize(alpha, (h, w))
        levels = torch.round(inputs["trimap"].float())
        alpha = torch.where(levels == UNKNOWN_LEVEL, alpha, levels / 255.0)
        return quantize(alpha, self.quantize)[0, 0]
