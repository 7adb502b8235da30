"""Whole-image test strategies of P3M-Net (docs/p3m-net.md §6), on tensors.

One implementation serves validation, ``eval.py``, ``predict.py`` and the Python API. Images
are ImageNet-normalised tensors; resizing is bilinear torch interpolation, antialiased when
shrinking (the reference used float64 skimage resizing for the same purpose).
"""

from __future__ import annotations

from enum import Enum

import torch
import torch.nn.functional as F
from torch import nn

MAX_SIDE = 1600
"""Largest side the network sees (the reference's MAX_SIZE_H / MAX_SIZE_W)."""


class Strategy(str, Enum):
    """Test strategies: ``resize`` (published numbers) and ``hybrid`` (best for real photos)."""

    RESIZE = "resize"
    HYBRID = "hybrid"


def network_size(
    height: int, width: int, ratio: float, max_side: int = MAX_SIDE
) -> tuple[int, int]:
    """Size the network sees: ``ratio`` of the image, rounded down to 32, capped at ``max_side``.

    The cap is itself rounded down to a multiple of 32 (the network needs one), so
    ``max_side=1000`` caps at 992. Images too small for one 32-pixel step at this ratio get 32
    rather than the reference's crash on a zero size.
    """
    cap = max(32, max_side - max_side % 32)

    def side(n: int) -> int:
        scaled = int(n * ratio)
        return max(32, min(cap, scaled - scaled % 32))

    return side(height), side(width)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(B, C, H, W)``, antialiased when shrinking."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def _forward(
    model: nn.Module, image: torch.Tensor, size: tuple[int, int], output: str
) -> torch.Tensor:
    """One network pass at ``size``, returning the output map ``output``.

    A model that can select its outputs (``selects_outputs``, e.g. ``P3MNet``) computes only
    that map; others (the journal P3M-Net's dict outputs) compute all and one is taken.
    """
    if getattr(model, "selects_outputs", False):
        return model(resize(image, size), outputs=(output,))[output].float()
    return model(resize(image, size))[output].float()


def predict_alpha(
    model: nn.Module,
    image: torch.Tensor,
    strategy: Strategy | str = Strategy.RESIZE,
    max_side: int = MAX_SIDE,
) -> torch.Tensor:
    """Alpha of one whole image at its own resolution.

    Args:
        model: a P3M-Net of any encoder (ResNet-34, timm, Swin-T, ViTAE-S) in eval mode, or
            a wrapper of one; outputs are read by name (``fusion``, ``global_logits``,
            ``local``).
        image: ``(1, 3, H, W)`` ImageNet-normalised, any H, W.
        strategy: ``resize``: one pass at half size, fused alpha resized back (the published
            protocol). ``hybrid``: the trimap from a half-size pass, the local alpha from a
            full-size pass; trimap where it says 0 or 255, local alpha elsewhere.
        max_side: cap on each side the network sees.

    Returns:
        ``(H, W)`` float32 alpha in [0, 1], on the image's device.
    """
    strategy = Strategy(strategy)
    h, w = image.shape[-2:]
    half = network_size(h, w, 0.5, max_side)
    if strategy is Strategy.RESIZE:
        fusion = _forward(model, image, half, "fusion")
        return resize(fusion, (h, w))[0, 0].clamp(0.0, 1.0)
    # Each pass computes only what it contributes: the trimap at half size, the local alpha
    # at full size (P3MNet skips the rest of its decoders).
    global_logits = _forward(model, image, half, "global_logits")
    # The reference resizes the 0/128/255 trimap bilinearly; in-between values near class
    # borders fall back to the local alpha.
    trimap = resize(global_logits.argmax(dim=1, keepdim=True).float() * 127.5, (h, w))
    del global_logits
    trimap = torch.where(trimap > 254.999, 255.0, torch.where(trimap < 0.001, 0.0, trimap))
    local = resize(_forward(model, image, network_size(h, w, 1.0, max_side), "local"), (h, w))
    known = (trimap == 0.0) | (trimap == 255.0)
    return torch.where(known, trimap / 255.0, local)[0, 0].clamp(0.0, 1.0)
