"""P3M-Net's own test-time procedure: ``HYBRID`` (the reference ``core/test.py``).

Its ``RESIZE`` (the published protocol) is the generic ``p3m_lightning.inference.Resize`` at
half scale. ``HYBRID`` takes the trimap from a half-size pass and the matting decoder's alpha
from a full-size pass. The journal P3M-Nets (Swin-T, ViTAE-S) use the same procedure
(``core/infer.py`` of their release repeats it line for line).
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

__all__ = ["P3MHybrid", "hybrid_alpha"]


def _forward(
    model: nn.Module, image: Tensor, size: tuple[int, int], output: str, resampling: str
) -> Tensor:
    """One network pass at ``size``, returning the output map ``output`` (float32).

    A model that can select its outputs (``selects_outputs``, e.g. ``P3MNet``) computes only
    that map; others (the journal P3M-Net's dict outputs) compute all and one is taken.
    """
    x = resample_photo(image, size, resampling)
    if getattr(model, "selects_outputs", False):
        return model(x, outputs=(output,))[output].float()
    return model(x)[output].float()


def _trimap_levels(global_logits: Tensor) -> Tensor:
    """The semantic classes as the reference's 0 / 128 / 255 map (first maximum wins)."""
    classes = global_logits.max(dim=1, keepdim=True).indices
    return torch.where(classes == 2, 255, classes * 128).to(torch.uint8)


def hybrid_alpha(
    model: nn.Module, image: Tensor, max_side: int = MAX_SIDE, resampling: str = "skimage_0.14"
) -> Tensor:
    """Alpha of one whole image by P3M-Net's ``HYBRID``.

    The 0 / 128 / 255 trimap of a half-size pass is resized back bilinearly; where it is
    exactly 0 or 255 it is the alpha, elsewhere (the predicted transition, and every pixel the
    bilinear resize leaves between two levels) the matting decoder's alpha of a full-size pass.

    Args:
        model: a P3M-Net of any encoder (ResNet-34, timm, Swin-T, ViTAE-S) in eval mode;
            outputs are read by name (``global_logits``, ``local``).
        image: ``(1, 3, H, W)`` ImageNet-normalised, any H, W.
        max_side: cap on each side the network sees.
        resampling: ``skimage_0.14`` (the reference's scikit-image) or ``torch`` (fast).

    Returns:
        ``(H, W)`` float32 alpha in [0, 1], on the image's device.
    """
    check_resampling(resampling)
    h, w = image.shape[-2:]
    half = network_size(h, w, 0.5, max_side)
    levels = _trimap_levels(_forward(model, image, half, "global_logits", resampling))
    full = network_size(h, w, 1.0, max_side)
    local = resample_map(_forward(model, image, full, "local", resampling), (h, w), resampling)
    known, trimap_alpha = resample_levels(levels, (h, w), resampling)
    return torch.where(known, trimap_alpha, local[0, 0]).clamp(0.0, 1.0)


class P3MHybrid(InferenceStrategy):
    """P3M-Net's ``HYBRID``: the trimap of a half-size pass, the matting decoder's alpha of a
    full-size pass (``hybrid_alpha``).

    For the P3M-Net family (ResNet-34, timm, Swin-T, ViTAE-S encoders): the network returns
    ``global_logits`` and ``local``.

    Args:
        resampling: ``skimage_0.14`` (the reference's) or ``torch``.
        quantize: the official evaluation's 8-bit matte (the journal release scores PNGs
            written with ``floor``), or None (the ACM MM release scores the float matte).
        max_side: cap on each side the network sees.
    """

    name = "hybrid"

    def __init__(
        self,
        resampling: str = "skimage_0.14",
        quantize: str | None = None,
        max_side: int = MAX_SIDE,
    ) -> None:
        super().__init__(max_side)
        if check_resampling(resampling) == "skimage_0.17":
            raise ValueError("P3M-Net's HYBRID resizes with skimage_0.14 or torch")
        self.resampling = resampling
        self.quantize = check_quantize(quantize)

    def params(self) -> dict[str, Any]:
        return {"resampling": self.resampling, "quantize": self.quantize}

    def __call__(self, net: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
        check_inputs(net, inputs)
        alpha = hybrid_alpha(net, inputs["image"], self.max_side, self.resampling)
        return quantize(alpha, self.quantize)
