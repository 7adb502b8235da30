"""P3M-Net's own test-time procedure: ``HYBRID`` (the reference ``core/test.py``).

Its ``RESIZE`` (the published protocol) is the generic ``p3m_lightning.inference.Resize`` at
half scale. ``HYBRID`` takes the trimap from a half-size pass and the matting decoder's alpha
from a full-size pass. The journal P3M-Nets (Swin-T, ViTAE-S) use the same procedure.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from p3m_lightning.inference import (
    MAX_SIDE,
    InferenceStrategy,
    check_inputs,
    network_size,
    resize,
)

__all__ = ["P3MHybrid", "hybrid_alpha"]


def _forward(model: nn.Module, image: Tensor, size: tuple[int, int], output: str) -> Tensor:
    """One network pass at ``size``, returning the output map ``output``.

    A model that can select its outputs (``selects_outputs``, e.g. ``P3MNet``) computes only
    that map; others (the journal P3M-Net's dict outputs) compute all and one is taken.
    """
    if getattr(model, "selects_outputs", False):
        return model(resize(image, size), outputs=(output,))[output].float()
    return model(resize(image, size))[output].float()


def hybrid_alpha(model: nn.Module, image: Tensor, max_side: int = MAX_SIDE) -> Tensor:
    """Alpha of one whole image by P3M-Net's ``HYBRID``.

    The trimap from a half-size pass, the local alpha from a full-size pass; the trimap where
    it says 0 or 255, the local alpha elsewhere.

    Args:
        model: a P3M-Net of any encoder (ResNet-34, timm, Swin-T, ViTAE-S) in eval mode;
            outputs are read by name (``global_logits``, ``local``).
        image: ``(1, 3, H, W)`` ImageNet-normalised, any H, W.
        max_side: cap on each side the network sees.

    Returns:
        ``(H, W)`` float32 alpha in [0, 1], on the image's device.
    """
    h, w = image.shape[-2:]
    global_logits = _forward(model, image, network_size(h, w, 0.5, max_side), "global_logits")
    # The reference resizes the 0/128/255 trimap bilinearly; in-between values near class
    # borders fall back to the local alpha.
    classes = global_logits.max(dim=1, keepdim=True).indices
    trimap = resize(classes.float() * 127.5, (h, w))
    del global_logits, classes
    trimap = torch.where(trimap > 254.999, 255.0, torch.where(trimap < 0.001, 0.0, trimap))
    local = resize(_forward(model, image, network_size(h, w, 1.0, max_side), "local"), (h, w))
    known = (trimap == 0.0) | (trimap == 255.0)
    return torch.where(known, trimap / 255.0, local)[0, 0].clamp(0.0, 1.0)


class P3MHybrid(InferenceStrategy):
    """P3M-Net's ``HYBRID``: the trimap of a half-size pass, the matting decoder's alpha of a
    full-size pass (``hybrid_alpha``).

    For the P3M-Net family (ResNet-34, timm, Swin-T, ViTAE-S encoders): the network returns
    ``global_logits`` and ``local``.
    """

    name = "hybrid"

    def __call__(self, net: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
        check_inputs(net, inputs)
        return hybrid_alpha(net, inputs["image"], self.max_side)
