"""Trimap guidance: known regions of a trimap overwrite an alpha.

A leaf module (imports only torch). ``trimap_guided`` serves the trimap-based methods (GCA,
IndexNet, FBA, DIM, AlphaGAN): each official test script sets alpha to 1 where the trimap is
foreground and to 0 where it is background, and keeps the network's prediction in the unknown
region. ``fuse`` is the same rule with a predicted three-class trimap (P3M-Net, its journal
versions, GFM).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["fuse", "trimap_guided", "trimap_levels"]


def trimap_levels(trimap: Tensor) -> tuple[Tensor, Tensor]:
    """Background and foreground masks of a trimap.

    The trimap is rounded to the nearest 8-bit level first, so float noise of a resize
    (254.99998) stays foreground; 0 is background, 255 foreground, anything else unknown.

    Args:
        trimap: ``(B, 1, H, W)`` float in [0, 255].

    Returns:
        ``(background, foreground)``: two ``(B, 1, H, W)`` bool masks.
    """
    levels = torch.round(trimap)
    return levels <= 0, levels >= 255


def trimap_guided(alpha: Tensor, trimap: Tensor) -> Tensor:
    """Alpha with the trimap's known regions imposed: 0 on background, 1 on foreground.

    Gradients flow to ``alpha`` in the unknown region only.

    Args:
        alpha: ``(B, 1, H, W)`` predicted alpha in [0, 1].
        trimap: ``(B, 1, H, W)`` float in [0, 255] (0 background, 255 foreground).

    Returns:
        ``(B, 1, H, W)`` alpha in [0, 1], same dtype as ``alpha``.
    """
    if alpha.shape != trimap.shape:
        raise ValueError(
            f"trimap_guided: alpha has shape {tuple(alpha.shape)} but trimap has "
            f"{tuple(trimap.shape)}; both must be (B, 1, H, W)."
        )
    background, foreground = trimap_levels(trimap)
    alpha = torch.where(background, torch.zeros_like(alpha), alpha)
    return torch.where(foreground, torch.ones_like(alpha), alpha)


def fuse(global_logits: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """Fused alpha: ``local`` on the predicted transition, 1 on foreground, 0 on background."""
    # max(...).indices is argmax's first maximum too, and about 10x faster on CPU.
    cls = global_logits.max(dim=1, keepdim=True).indices
    return local * (cls == 1).to(local.dtype) + (cls == 2).to(local.dtype)
