"""MODNet's own test-time resizing (the reference's image-matting demo)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["modnet_alpha", "modnet_size"]


def modnet_size(height: int, width: int, ref_size: int = 512) -> tuple[int, int]:
    """Size MODNet sees: short side scaled to ``ref_size`` unless the image already straddles
    it (long side >= ``ref_size`` >= short side), then both sides rounded down to 32.

    Sides that would round to 0 become 32.
    """
    if max(height, width) < ref_size or min(height, width) > ref_size:
        if width >= height:
            height, width = ref_size, int(width / height * ref_size)
        else:
            height, width = int(height / width * ref_size), ref_size
    return max(32, height - height % 32), max(32, width - width % 32)


def modnet_alpha(model: nn.Module, image: torch.Tensor, ref_size: int = 512) -> torch.Tensor:
    """Alpha of one whole image: area-resize to ``modnet_size``, one pass, area-resize back.

    Args:
        model: a ``MODNet`` in eval mode.
        image: ``(1, 3, H, W)`` ImageNet-normalised, any H, W.
        ref_size: target short side (512 in the reference).

    Returns:
        ``(H, W)`` float32 alpha in [0, 1], on the image's device.
    """
    h, w = image.shape[-2:]
    small = F.interpolate(image, size=modnet_size(h, w, ref_size), mode="area")
    matte = model(small)["alpha"].float()
    return F.interpolate(matte, size=(h, w), mode="area")[0, 0].clamp(0.0, 1.0)
