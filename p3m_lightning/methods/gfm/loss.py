"""The GFM training objective (after the reference ``core/train.py``, RoSTa ``TT``).

``loss = 0.25 L_glance + 0.25 L_focus + 0.25 L_fusion + 0.25 L_comp`` with

- ``L_glance``: cross-entropy of the glance map against the trimap's 3 classes. The reference
  feeds the SIGMOID of the glance logits to ``nn.CrossEntropyLoss`` (which applies its own
  softmax on top); that is kept, since released weights and the published numbers come from it.
- ``L_focus``: alpha loss plus Laplacian loss of the focus map, both restricted to the
  trimap's transition region (the same terms as P3M-Net's local loss).
- ``L_fusion``: alpha loss plus Laplacian loss of the fused alpha over the whole image.
- ``L_comp``: composition loss of the fused alpha in RGB [0, 1] (the reference composites
  0..255 images and divides by 255), i.e. on de-normalised image, F and B.

The FT/BT RoSTa variants need dilated/eroded alpha targets that the batch vocabulary does not
carry; only TT (the P3M benchmark's variant) is trained here.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from p3m_lightning.losses.terms import (
    alpha_loss,
    composition_loss,
    cross_entropy_loss,
    laplacian_loss,
    transition_alpha_loss,
    transition_mask,
    trimap_classes,
)
from p3m_lightning.normalization import denormalize

__all__ = ["GFMLoss"]

_BATCH_KEYS = ("image", "alpha", "trimap", "fg", "bg")
_OUTPUT_KEYS = ("alpha", "glance_logits", "focus")


class GFMLoss(nn.Module):
    """GFM's objective for the TT RoSTa; every term weighted 0.25 by default.

    Args:
        w_glance: weight of ``L_glance``.
        w_focus: weight of ``L_focus``.
        w_fusion: weight of ``L_fusion``.
        w_comp: weight of ``L_comp``.
        laplacian_levels: band-pass levels of the Laplacian losses (5 in the reference).
    """

    def __init__(
        self,
        w_glance: float = 0.25,
        w_focus: float = 0.25,
        w_fusion: float = 0.25,
        w_comp: float = 0.25,
        laplacian_levels: int = 5,
    ) -> None:
        super().__init__()
        self.w_glance = w_glance
        self.w_focus = w_focus
        self.w_fusion = w_fusion
        self.w_comp = w_comp
        self.laplacian_levels = laplacian_levels

    def forward(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """Compute every term for one batch.

        Args:
            outputs: ``glance_logits`` ``(B, 3, H, W)``, ``focus`` and ``alpha``
                ``(B, 1, H, W)`` in [0, 1], all at the batch's resolution.
            batch: ``image``, ``fg``, ``bg`` ``(B, 3, H, W)`` ImageNet-normalised, ``alpha``
                ``(B, 1, H, W)`` in [0, 1], ``trimap`` ``(B, 1, H, W)`` in [0, 255].

        Returns:
            Scalar float32 tensors: ``loss`` (weighted total), the unweighted ``loss_glance``,
            ``loss_focus``, ``loss_fusion``, ``loss_comp`` and the parts
            ``loss_focus_{alpha,lap}``, ``loss_fusion_{alpha,lap}``.
        """
        missing = [k for k in _BATCH_KEYS if k not in batch]
        missing += [f"outputs.{k}" for k in _OUTPUT_KEYS if k not in outputs]
        if missing:
            raise KeyError(
                f"GFMLoss needs batch keys {list(_BATCH_KEYS)} and outputs "
                f"{list(_OUTPUT_KEYS)}; missing {missing}."
            )
        if outputs["glance_logits"].shape[1] != 3:
            raise ValueError(
                "GFMLoss trains the TT RoSTa (3 glance classes); got "
                f"{outputs['glance_logits'].shape[1]} channels. Use GFMNet(rosta='TT')."
            )
        levels = self.laplacian_levels
        with torch.autocast(device_type=batch["alpha"].device.type, enabled=False):
            alpha = batch["alpha"].float()
            mask = transition_mask(batch["trimap"])
            focus = outputs["focus"].float()
            fusion = outputs["alpha"].float()
            glance = torch.sigmoid(outputs["glance_logits"].float())

            terms = {"loss_glance": cross_entropy_loss(glance, trimap_classes(batch["trimap"]))}
            terms["loss_focus_alpha"] = transition_alpha_loss(focus, alpha, mask)
            terms["loss_focus_lap"] = laplacian_loss(focus * mask, alpha * mask, levels)
            terms["loss_focus"] = terms["loss_focus_alpha"] + terms["loss_focus_lap"]
            terms["loss_fusion_alpha"] = alpha_loss(fusion, alpha)
            terms["loss_fusion_lap"] = laplacian_loss(fusion, alpha, levels)
            terms["loss_fusion"] = terms["loss_fusion_alpha"] + terms["loss_fusion_lap"]
            terms["loss_comp"] = composition_loss(
                fusion,
                denormalize(batch["image"].float()),
                denormalize(batch["fg"].float()),
                denormalize(batch["bg"].float()),
            )
            terms["loss"] = (
                self.w_glance * terms["loss_glance"]
                + self.w_focus * terms["loss_focus"]
                + self.w_fusion * terms["loss_fusion"]
                + self.w_comp * terms["loss_comp"]
            )
        return terms

    def extra_repr(self) -> str:
        return (
            f"w_glance={self.w_glance}, w_focus={self.w_focus}, w_fusion={self.w_fusion}, "
            f"w_comp={self.w_comp}, laplacian_levels={self.laplacian_levels}"
        )
