"""GFM's own hybrid test-time strategy (the reference ``core/test.py``, ``HYBRID``).

GFM's ``RESIZE`` is the generic ``p3m_lightning.inference.Resize`` at half scale with GFM's
resampling (scikit-image 0.17, which its ``requirements.txt`` pins). Its ``HYBRID`` differs
from P3M-Net's: the glance map comes from a pass at 1/3 of the image size and the focus map
from a pass at 1/2 (P3M-Net uses 1/2 and the full size).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from p3m_lightning.inference import (
    MAX_SIDE,
    InferenceStrategy,
    check_inputs,
    check_quantize,
    check_resampling,
    network_size,
    quantize,
    resample_levels,
    resample_map,
    resample_photo,
)

__all__ = ["GFMHybrid", "gfm_hybrid_alpha"]


def _glance_levels(glance_logits: Tensor, rosta: str) -> Tensor:
    """The glance classes as the reference draws them (argmax of the sigmoid: saturated ties go
    to the lower class): TT 0 / 128 / 255, FT and BT 0 / 255."""
    classes = torch.sigmoid(glance_logits).max(dim=1, keepdim=True).indices
    level = 128 if rosta == "TT" else 255
    return torch.where(classes == 2, 255, classes * level).to(torch.uint8)


def gfm_hybrid_alpha(
    model: nn.Module,
    image: Tensor,
    glance_ratio: float = 1 / 3,
    focus_ratio: float = 1 / 2,
    max_side: int = MAX_SIDE,
    resampling: str = "skimage_0.17",
) -> Tensor:
    """Alpha of one whole image by GFM's hybrid strategy.

    The glance map is resized bilinearly to the image and combined with the resized focus map
    by the model's RoSTa: TT keeps the glance map where it is exactly 0 or 255 and takes the
    focus alpha elsewhere (so the blurred class borders fall back to focus); FT adds, BT
    subtracts the focus map.

    Args:
        model: a ``GFMNet`` (any RoSTa) in eval mode, returning ``glance_logits`` and ``focus``.
        image: ``(1, 3, H, W)`` ImageNet-normalised, any H, W.
        glance_ratio: scale of the glance pass (1/3 in the reference).
        focus_ratio: scale of the focus pass (1/2 in the reference).
        max_side: cap on each side the network sees (1600 in the reference).
        resampling: ``skimage_0.17`` (the reference's scikit-image) or ``torch`` (fast).

    Returns:
        ``(H, W)`` float32 alpha in [0, 1], on the image's device.
    """
    check_resampling(resampling)
    h, w = image.shape[-2:]
    rosta = model.rosta
    size = network_size(h, w, glance_ratio, max_side)
    logits = model(resample_photo(image, size, resampling))["glance_logits"].float()
    levels = _glance_levels(logits, rosta)
    size = network_size(h, w, focus_ratio, max_side)
    focus = model(resample_photo(image, size, resampling))["focus"].float()
    focus = resample_map(focus, (h, w), resampling)[0, 0]
    known, glance = resample_levels(levels, (h, w), resampling)
    if rosta == "TT":
        alpha = torch.where(known, glance, focus)
    elif rosta == "FT":
        alpha = glance + focus
    else:
        alpha = glance - focus
    return alpha.clamp(0.0, 1.0)


class GFMHybrid(InferenceStrategy):
    """GFM's ``HYBRID``: glance at 1/3, focus at 1/2 of the image, merged by its RoSTa.

    Args:
        resampling: ``skimage_0.17`` (the reference's) or ``torch``.
        quantize: an 8-bit matte (``QUANTIZE``); GFM's evaluation scores the float matte.
        max_side: cap on each side the network sees.
    """

    name = "gfm_hybrid"

    def __init__(
        self,
        resampling: str = "skimage_0.17",
        quantize: str | None = None,
        max_side: int = MAX_SIDE,
    ) -> None:
        super().__init__(max_side)
        self.resampling = check_resampling(resampling)
        self.quantize = check_quantize(quantize)

    def params(self) -> dict[str, Any]:
        return {"resampling": self.resampling, "quantize": self.quantize}

    def __call__(self, net: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
        check_inputs(net, inputs)
        alpha = gfm_hybrid_alpha(
            net, inputs["image"], max_side=self.max_side, resampling=self.resampling
        )
        return quantize(alpha, self.quantize)
