"""The LF training objective (Zhang et al., CVPR 2019), after the paper (no public code).

With ``U`` the soft region of the ground truth (``0 < alpha < 1``):

- Classification loss of a decoder (``L_F`` against ``alpha``, ``L_B`` against ``1 - alpha``):
  a per-pixel weighted binary cross-entropy with soft targets, weight 1 on solid pixels and
  ``soft_weight`` (0.5) on ``U``, so the decoders are mainly asked to agree on the hard
  segmentation; plus an L1 term and an L1 gradient term on ``U`` (weights ``w_l1``,
  ``w_grad``), which keep each probability map close to the matte's shape where it is soft.
- Fusion loss ``L_u``: the L1 error of the fused alpha, weight 1 on ``U`` and
  ``fusion_solid_weight`` (0.1) elsewhere, so the fusion network spends itself on the soft
  region the decoders leave to it.
- ``loss = w_fusion L_u + w_seg (L_F + L_B)``; the joint stage uses ``w_fusion = 1``,
  ``w_seg = 0.5``. The paper's two pre-training stages are the special cases
  ``w_fusion = 0`` (segmentation network alone) and ``w_seg = 0`` (fusion network alone, with
  the segmentation network frozen by the caller).

Outputs used: ``alpha`` ``(B, 1, H, W)`` in [0, 1], ``fg_logits`` and ``bg_logits``
``(B, 1, H, W)`` raw logits, all at the batch's resolution.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LFLoss", "classification_loss", "fusion_loss", "soft_mask"]

_OUTPUT_KEYS = ("alpha", "fg_logits", "bg_logits")


def soft_mask(alpha: Tensor) -> Tensor:
    """``(B, 1, H, W)`` float mask of the soft region ``0 < alpha < 1``."""
    return ((alpha > 0) & (alpha < 1)).to(alpha.dtype)


def _masked_mean(err: Tensor, mask: Tensor) -> Tensor:
    """Sum of ``err`` over ``mask`` divided by ``|mask| + 1`` (0 when the mask is empty)."""
    return (err * mask).sum() / (mask.sum() + 1.0)


def _gradient_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean over ``mask`` of ``|d_x pred - d_x target| + |d_y pred - d_y target|``.

    Forward differences; a difference counts where both of its pixels lie in ``mask``.
    """
    diff = pred - target
    dx = (diff[..., :, 1:] - diff[..., :, :-1]).abs()
    dy = (diff[..., 1:, :] - diff[..., :-1, :]).abs()
    mx = mask[..., :, 1:] * mask[..., :, :-1]
    my = mask[..., 1:, :] * mask[..., :-1, :]
    return (dx * mx).sum() / (mx.sum() + 1.0) + (dy * my).sum() / (my.sum() + 1.0)


def classification_loss(
    logits: Tensor,
    target: Tensor,
    soft_weight: float = 0.5,
    w_l1: float = 1.0,
    w_grad: float = 1.0,
) -> dict[str, Tensor]:
    """One decoder's loss: weighted soft-target BCE + L1 and gradient L1 on the soft region.

    Args:
        logits: ``(B, 1, H, W)`` raw logits of the class probability.
        target: ``(B, 1, H, W)`` soft target in [0, 1] (``alpha`` or ``1 - alpha``).
        soft_weight: BCE weight of pixels with ``0 < target < 1`` (1 elsewhere).
        w_l1: weight of the L1 term.
        w_grad: weight of the gradient term.

    Returns:
        Scalar float32 ``total``, ``ce``, ``l1``, ``grad`` (the last three unweighted).
    """
    logits = logits.float()
    target = target.float()
    mask = soft_mask(target)
    weight = 1.0 + (soft_weight - 1.0) * mask
    ce = F.binary_cross_entropy_with_logits(logits, target, weight=weight)
    prob = torch.sigmoid(logits)
    l1 = _masked_mean((prob - target).abs(), mask)
    grad = _gradient_l1(prob, target, mask)
    return {"total": ce + w_l1 * l1 + w_grad * grad, "ce": ce, "l1": l1, "grad": grad}


def fusion_loss(pred: Tensor, alpha: Tensor, solid_weight: float = 0.1) -> Tensor:
    """Weighted L1 of the fused alpha: weight 1 on ``0 < alpha < 1``, ``solid_weight`` elsewhere.

    Args:
        pred: ``(B, 1, H, W)`` fused alpha in [0, 1].
        alpha: ``(B, 1, H, W)`` ground truth in [0, 1].
        solid_weight: weight of the pixels where ``alpha`` is 0 or 1.

    Returns:
        Scalar float32: the weighted errors summed and divided by the pixel count.
    """
    pred = pred.float()
    alpha = alpha.float()
    weight = solid_weight + (1.0 - solid_weight) * soft_mask(alpha)
    return (weight * (pred - alpha).abs()).mean()


class LFLoss(nn.Module):
    """LF's objective ``w_fusion L_u + w_seg (L_F + L_B)``; joint-stage weights by default.

    Args:
        w_fusion: weight of the fusion loss ``L_u`` (0 for segmentation pre-training).
        w_seg: weight of the two classification losses (0 for fusion pre-training).
        soft_weight: cross-entropy weight of soft pixels in ``L_F`` and ``L_B``.
        w_l1: weight of the L1 term inside ``L_F`` and ``L_B``.
        w_grad: weight of the gradient term inside ``L_F`` and ``L_B``.
        fusion_solid_weight: weight of solid pixels in ``L_u``.
    """

    def __init__(
        self,
        w_fusion: float = 1.0,
        w_seg: float = 0.5,
        soft_weight: float = 0.5,
        w_l1: float = 1.0,
        w_grad: float = 1.0,
        fusion_solid_weight: float = 0.1,
    ) -> None:
        super().__init__()
        self.w_fusion = w_fusion
        self.w_seg = w_seg
        self.soft_weight = soft_weight
        self.w_l1 = w_l1
        self.w_grad = w_grad
        self.fusion_solid_weight = fusion_solid_weight

    def forward(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """Compute every term for one batch.

        Args:
            outputs: ``alpha``, ``fg_logits``, ``bg_logits`` ``(B, 1, H, W)``.
            batch: ``alpha`` ``(B, 1, H, W)`` in [0, 1].

        Returns:
            Scalar float32 tensors: ``loss`` (weighted total), the unweighted ``loss_fusion``,
            ``loss_fg``, ``loss_bg`` and their parts ``loss_{fg,bg}_{ce,l1,grad}``.
        """
        missing = [f"outputs.{k}" for k in _OUTPUT_KEYS if k not in outputs]
        if "alpha" not in batch:
            missing.append("alpha")
        if missing:
            raise KeyError(
                f"LFLoss needs batch key 'alpha' and outputs {list(_OUTPUT_KEYS)}; "
                f"missing {missing}."
            )
        with torch.autocast(device_type=batch["alpha"].device.type, enabled=False):
            alpha = batch["alpha"].float()
            terms = {"loss_fusion": fusion_loss(outputs["alpha"], alpha, self.fusion_solid_weight)}
            targets = {"fg": alpha, "bg": 1.0 - alpha}
            for name, target in targets.items():
                parts = classification_loss(
                    outputs[f"{name}_logits"], target, self.soft_weight, self.w_l1, self.w_grad
                )
                terms[f"loss_{name}"] = parts["total"]
                for part in ("ce", "l1", "grad"):
                    terms[f"loss_{name}_{part}"] = parts[part]
            terms["loss"] = self.w_fusion * terms["loss_fusion"] + self.w_seg * (
                terms["loss_fg"] + terms["loss_bg"]
            )
        return terms

    def extra_repr(self) -> str:
        return (
            f"w_fusion={self.w_fusion}, w_seg={self.w_seg}, soft_weight={self.soft_weight}, "
            f"w_l1={self.w_l1}, w_grad={self.w_grad}, "
            f"fusion_solid_weight={self.fusion_solid_weight}"
        )
