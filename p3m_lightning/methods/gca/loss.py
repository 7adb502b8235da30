"""The GCA-Matting objective (official ``trainer.py`` with ``rec_weight = 1``, every other
weight 0): L1 between predicted and true alpha on the trimap's unknown region,
``sum_U |pred - alpha| / (|U| + 1e-8)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from p3m_lightning.losses.terms import transition_mask

__all__ = ["GCALoss", "unknown_l1_loss"]


def unknown_l1_loss(pred: Tensor, alpha: Tensor, unknown: Tensor) -> Tensor:
    """Mean absolute alpha error over the unknown region (0 when it is empty).

    Args:
        pred: ``(B, 1, H, W)`` predicted alpha in [0, 1].
        alpha: ``(B, 1, H, W)`` ground truth in [0, 1].
        unknown: ``(B, 1, H, W)`` mask in {0, 1}.

    Returns:
        Scalar float32, >= 0.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        unknown = unknown.float()
        err = (pred.float() - alpha.float()).abs() * unknown
        return err.sum() / (unknown.sum() + 1e-8)


class GCALoss(nn.Module):
    """``loss = loss_alpha``: unknown-region L1 on the network's raw alpha (``alpha_raw``).

    The unknown region is the batch trimap's (``transition_mask``: neither 0 nor 255 after
    rounding), as the official code takes channel 1 of its one-hot trimap.
    """

    def forward(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """Compute the loss.

        Args:
            outputs: ``alpha_raw`` ``(B, 1, H, W)`` in [0, 1] (``GCANet``'s output).
            batch: ``alpha`` ``(B, 1, H, W)`` in [0, 1] and ``trimap`` ``(B, 1, H, W)`` in
                [0, 255].

        Returns:
            ``loss`` and ``loss_alpha`` (equal), scalar float32.
        """
        for key in ("alpha", "trimap"):
            if key not in batch:
                raise KeyError(f"GCALoss needs batch key {key!r}; the batch has {sorted(batch)}.")
        if "alpha_raw" not in outputs:
            raise KeyError(f"GCALoss needs the output 'alpha_raw' (GCANet); got {sorted(outputs)}.")
        term = unknown_l1_loss(
            outputs["alpha_raw"], batch["alpha"], transition_mask(batch["trimap"])
        )
        return {"loss": term, "loss_alpha": term}
