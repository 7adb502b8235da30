"""The Deep Image Matting objective (paper, as configured in open-mmlab/mmagic's DIM):
Charbonnier losses (``sqrt(d^2 + 1e-12)``) averaged over the trimap's unknown region U.

- ``loss_alpha``: on ``alpha_pred``, mean over U.
- ``loss_comp``: ``alpha_pred F + (1 - alpha_pred) B`` vs the image, RGB in [0, 1], mean over
  U and the 3 channels.
- ``loss_refine``: on ``alpha_refined`` (when present), mean over U.
- ``loss = w_alpha loss_alpha + w_comp loss_comp + w_refine loss_refine``; defaults 0.5 / 0.5
  / 1 (mmagic stage 3). Stage 1 (encoder-decoder only): ``w_refine = 0`` with
  ``DIMNet(refine=False)``; stage 2 (refiner only): ``w_alpha = w_comp = 0`` with the
  encoder-decoder frozen.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from p3m_lightning.losses.terms import transition_mask
from p3m_lightning.normalization import to_rgb01

__all__ = ["DIMLoss", "masked_charbonnier"]


def masked_charbonnier(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``sqrt((pred - target)^2 + 1e-12)`` over the mask (0 for an empty mask).

    Args:
        pred: ``(B, C, H, W)``.
        target: same shape.
        mask: ``(B, 1, H, W)`` in {0, 1}, broadcast over channels.

    Returns:
        Scalar float32, >= 0.
    """
    mask = mask.float().expand_as(pred)
    err = torch.sqrt((pred.float() - target.float()) ** 2 + 1e-12)
    return (err * mask).sum() / mask.sum().clamp_min(1.0)


class DIMLoss(nn.Module):
    """Alpha-prediction + compositional (+ refinement) loss of DIM on the unknown region.

    Args:
        w_alpha: weight of ``loss_alpha``.
        w_comp: weight of ``loss_comp``.
        w_refine: weight of ``loss_refine`` (ignored when the output has no ``alpha_refined``).
    """

    def __init__(self, w_alpha: float = 0.5, w_comp: float = 0.5, w_refine: float = 1.0) -> None:
        super().__init__()
        self.w_alpha, self.w_comp, self.w_refine = w_alpha, w_comp, w_refine

    def forward(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """Compute the loss.

        Args:
            outputs: ``alpha_pred`` and optionally ``alpha_refined``, ``(B, 1, H, W)`` in [0, 1].
            batch: ``image``, ``fg``, ``bg`` normalised ``(B, 3, H, W)``; ``alpha``
                ``(B, 1, H, W)`` in [0, 1]; ``trimap`` ``(B, 1, H, W)`` in [0, 255].

        Returns:
            ``loss``, ``loss_alpha``, ``loss_comp`` and, if refined, ``loss_refine``.
        """
        for key in ("image", "alpha", "trimap", "fg", "bg"):
            if key not in batch:
                raise KeyError(
                    f"DIMLoss needs batch key {key!r} (the datamodule must provide fg and bg)."
                )
        if "alpha_pred" not in outputs:
            raise KeyError(
                f"DIMLoss needs the output 'alpha_pred' (DIMNet); got {sorted(outputs)}."
            )
        with torch.autocast(device_type=batch["alpha"].device.type, enabled=False):
            unknown = transition_mask(batch["trimap"])
            pred = outputs["alpha_pred"].float()
            alpha = batch["alpha"].float()
            image, fg, bg = to_rgb01(batch["image"]), to_rgb01(batch["fg"]), to_rgb01(batch["bg"])
            terms = {
                "loss_alpha": masked_charbonnier(pred, alpha, unknown),
                "loss_comp": masked_charbonnier(pred * fg + (1 - pred) * bg, image, unknown),
            }
            total = self.w_alpha * terms["loss_alpha"] + self.w_comp * terms["loss_comp"]
            if "alpha_refined" in outputs:
                terms["loss_refine"] = masked_charbonnier(outputs["alpha_refined"], alpha, unknown)
                total = total + self.w_refine * terms["loss_refine"]
            terms["loss"] = total
        return terms
