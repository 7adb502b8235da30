"""GFM's own hybrid test-time strategy (the reference ``core/test.py``, ``HYBRID``).

GFM's ``RESIZE`` is the same as P3M-Net's (one pass at half size, fused alpha resized back).
Its ``HYBRID`` differs from P3M-Net's: the glance map comes from a pass at 1/3 of the image
size and the focus map from a pass at 1/2 (P3M-Net uses 1/2 and the full size).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from p3m_lightning.inference import MAX_SIDE, InferenceStrategy, check_inputs, network_size, resize

__all__ = ["GFMHybrid", "gfm_hybrid_alpha"]


def gfm_hybrid_alpha(
    model: nn.Module,
    image: torch.Tensor,
    glance_ratio: float = 1 / 3,
    focus_ratio: float = 1 / 2,
    max_side: int = MAX_SIDE,
) -> torch.Tensor:
    """Alpha of one whole image by GFM's hybrid strategy.

    The glance classes are drawn as a map (TT: 0 / 128 / 255; FT, BT: 0 / 255), resized
    bilinearly to the image, and combined with the resized focus map by the model's RoSTa:
    TT keeps the glance map where it is exactly 0 or 255 and takes the focus alpha elsewhere
    (so the blurred class borders fall back to focus); FT adds, BT subtracts the focus map.

    Args:
        model: a ``GFMNet`` (any RoSTa) in eval mode, returning ``glance_logits`` and ``focus``.
        image: ``(1, 3, H, W)`` ImageNet-normalised, any H, W.
        glance_ratio: scale of the glance pass (1/3 in the reference).
        focus_ratio: scale of the focus pass (1/2 in the reference).
        max_side: cap on each side the network sees (1600 in the reference).

    Returns:
        ``(H, W)`` float32 alpha in [0, 1], on the image's device.
    """
    h, w = image.shape[-2:]
    rosta = model.rosta
    glance_logits = model(resize(image, network_size(h, w, glance_ratio, max_side)))[
        "glance_logits"
    ].float()
    # argmax of the sigmoid, as the reference (ties go to the lower class).
    classes = torch.sigmoid(glance_logits).max(dim=1, keepdim=True).indices.float()
    level = 128.0 if rosta == "TT" else 255.0
    glance = resize(torch.where(classes == 2, 255.0, classes * level), (h, w)) / 255.0
    focus = model(resize(image, network_size(h, w, focus_ratio, max_side)))["focus"].float()
    focus = resize(focus, (h, w))
    if rosta == "TT":
        # Bilinear weights summing to 1 up to rounding: "exactly 0 or 255" within 1e-6.
        known = (glance < 1e-6) | (glance > 1.0 - 1e-6)
        alpha = torch.where(known, glance.round(), focus)
    elif rosta == "FT":
        alpha = glance + focus
    else:
        alpha = glance - focus
    return alpha[0, 0].clamp(0.0, 1.0)


class GFMHybrid(InferenceStrategy):
    """GFM's ``HYBRID``: glance at 1/3, focus at 1/2 of the image, merged by its RoSTa."""

    name = "gfm_hybrid"

    def __call__(self, net: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
        check_inputs(net, inputs)
        return gfm_hybrid_alpha(net, inputs["image"], max_side=self.max_side)
