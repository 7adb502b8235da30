"""MODNet's own test-time resizing (the reference's image-matting demo)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m_lightning.inference import MAX_SIDE, InferenceStrategy, check_inputs

__all__ = ["MODNetResize", "modnet_alpha", "modnet_size"]


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


class MODNetResize(InferenceStrategy):
    """MODNet's demo protocol: short side to ``ref_size`` (area resize), one pass, back.

    Args:
        ref_size: target short side (512 in the official demo).
        max_side: unused by the official protocol (kept for a uniform signature).
    """

    name = "modnet"

    def __init__(self, ref_size: int = 512, max_side: int = MAX_SIDE) -> None:
        super().__init__(max_side)
        self.ref_size = int(ref_size)

    def params(self) -> dict[str, Any]:
        return {"ref_size": self.ref_size}

    def __call__(self, net: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
        check_inputs(net, inputs)
        return modnet_alpha(net, inputs["image"], self.ref_size)
