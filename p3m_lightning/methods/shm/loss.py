"""The Semantic Human Matting (SHM, Chen et al., ACM MM 2018) joint training objective.

The paper's end-to-end loss is ``L = L_p + lambda * L_t`` with
``L_p = gamma * L_alpha + (1 - gamma) * L_comp`` on the fused alpha and ``L_t`` the
T-Net's three-class cross-entropy (background / unknown / foreground); the paper sets
``gamma = 0.5`` and ``lambda = 0.01``. ``L_alpha`` and ``L_comp`` are the smoothed L1
terms of ``p3m_lightning.methods.p3m_net.loss`` (the same definitions as DIM's).

Outputs used: ``"alpha"`` ``(B, 1, H, W)`` in [0, 1] and ``"trimap_logits"``
``(B, 3, H, W)`` raw logits (0 background, 1 unknown, 2 foreground).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from p3m_lightning.losses.terms import (
    alpha_loss,
    composition_loss,
    cross_entropy_loss,
    trimap_classes,
)

__all__ = ["SHMLoss"]


class SHMLoss(nn.Module):
    """SHM's joint objective ``gamma * L_alpha + (1 - gamma) * L_comp + lambda * L_t``.

    Args:
        gamma: weight of the alpha term against the composition term (0.5 in the paper).
        lam: weight of the T-Net cross-entropy (0.01 in the paper).
        w_prediction: weight of the alpha and composition terms (1; 0 for the T-Net
            pre-training stage, whose loss is the cross-entropy alone).

    The pre-training stages: T-Net ``SHMLoss(w_prediction=0, lam=1)``; M-Net (no T-Net
    output) ``SHMLoss(lam=0)``, where ``loss_trimap`` is then absent.
    """

    def __init__(self, gamma: float = 0.5, lam: float = 0.01, w_prediction: float = 1.0) -> None:
        super().__init__()
        self.gamma = gamma
        self.lam = lam
        self.w_prediction = w_prediction

    def forward(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """Return ``"loss"`` (weighted total) and the unweighted ``loss_alpha``,
        ``loss_comp`` and ``loss_trimap``, all scalar float32."""
        pred = outputs["alpha"]
        with torch.autocast(device_type=pred.device.type, enabled=False):
            pred = pred.float()
            alpha = batch["alpha"].float()
            l_alpha = alpha_loss(pred, alpha)
            l_comp = composition_loss(
                pred, batch["image"].float(), batch["fg"].float(), batch["bg"].float()
            )
            total = self.w_prediction * (self.gamma * l_alpha + (1 - self.gamma) * l_comp)
            terms = {"loss_alpha": l_alpha, "loss_comp": l_comp}
            if "trimap_logits" in outputs:
                l_t = cross_entropy_loss(
                    outputs["trimap_logits"].float(), trimap_classes(batch["trimap"])
                )
                total = total + self.lam * l_t
                terms["loss_trimap"] = l_t
            elif self.lam:
                raise KeyError("SHMLoss: lam > 0 needs the T-Net's trimap_logits")
        return {"loss": total, **terms}
