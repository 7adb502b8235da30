"""The P3M-Net training objective (after the reference ``core/train.py``).

The batch vocabulary and the float32 rule of the shared terms are those of
``p3m_lightning.losses.terms``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from p3m_lightning.losses.terms import (
    alpha_loss,
    composition_loss,
    cross_entropy_loss,
    laplacian_kernel,
    laplacian_loss,
    no_autocast,
    transition_alpha_loss,
    transition_mask,
    trimap_classes,
)

__all__ = ["P3MLoss", "global_loss"]

# L_global = 3 * CE(global) + CE(side2) + CE(side1) + CE(side0), as in the reference train loop.
_GLOBAL_HEAD_WEIGHTS = {"global_logits": 3.0, "side2": 1.0, "side1": 1.0, "side0": 1.0}

_BATCH_KEYS = ("image", "alpha", "trimap", "fg", "bg")


def global_loss(out: Mapping[str, Tensor], classes: Tensor) -> dict[str, Tensor]:
    """L_global = 3 CE(global) + CE(side2) + CE(side1) + CE(side0).

    Args:
        out: the network's predictions; the four logit maps are ``(B, 3, H, W)``.
        classes: ``(B, H, W)`` int64 from ``trimap_classes``.

    Returns:
        ``loss_global`` and the unweighted per-head terms ``loss_global_main``,
        ``loss_global_side2``, ``loss_global_side1``, ``loss_global_side0``.
    """
    heads = {name: cross_entropy_loss(out[name], classes) for name in _GLOBAL_HEAD_WEIGHTS}
    total = sum(_GLOBAL_HEAD_WEIGHTS[name] * term for name, term in heads.items())
    return {
        "loss_global": total,
        "loss_global_main": heads["global_logits"],
        "loss_global_side2": heads["side2"],
        "loss_global_side1": heads["side1"],
        "loss_global_side0": heads["side0"],
    }


class P3MLoss(nn.Module):
    """The P3M-Net objective: ``w_global L_global + w_local L_local + w_fusion L_fusion +
    w_comp L_comp`` (defaults 1/6, 2, 3, 1 as in the reference).

    - ``L_global = 3 CE(global) + CE(side2) + CE(side1) + CE(side0)`` vs ``trimap_classes``.
    - ``L_local = transition_alpha_loss(local) + laplacian_loss(local * T, alpha * T)``.
    - ``L_fusion = alpha_loss(fusion) + laplacian_loss(fusion, alpha)``.
    - ``L_comp = composition_loss(fusion, image, fg, bg)``.

    The Laplacian kernel is a non-persistent buffer: it follows ``.to(device)`` but stays out
    of checkpoints.

    Args:
        w_global: weight of L_global.
        w_local: weight of L_local.
        w_fusion: weight of L_fusion.
        w_comp: weight of L_comp.
        laplacian_levels: band-pass levels of both Laplacian losses.
    """

    kernel: Tensor

    def __init__(
        self,
        w_global: float = 1 / 6,
        w_local: float = 2.0,
        w_fusion: float = 3.0,
        w_comp: float = 1.0,
        laplacian_levels: int = 5,
    ) -> None:
        super().__init__()
        self.w_global = w_global
        self.w_local = w_local
        self.w_fusion = w_fusion
        self.w_comp = w_comp
        self.laplacian_levels = laplacian_levels
        self.register_buffer("kernel", laplacian_kernel(), persistent=False)

    def _kernel(self) -> Tensor:
        # A "bf16-true"/"16-true" module cast also rounds buffers; rebuild the exact kernel then.
        if self.kernel.dtype == torch.float32:
            return self.kernel
        return laplacian_kernel().to(self.kernel.device)

    def forward(self, out: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Compute every term for one batch.

        Args:
            out: predictions; ``global_logits``/``side*`` ``(B, 3, H, W)`` logits, ``local`` and
                ``fusion`` ``(B, 1, H, W)`` in [0, 1].
            batch: ``image``, ``alpha``, ``trimap``, ``fg``, ``bg`` as in the module docstring.

        Returns:
            Scalar float32 tensors: ``loss`` (weighted total), the unweighted ``loss_global``,
            ``loss_local``, ``loss_fusion``, ``loss_comp``, and their parts
            ``loss_global_{main,side2,side1,side0}``, ``loss_local_{alpha,lap}``,
            ``loss_fusion_{alpha,lap}``.
        """
        missing = [key for key in _BATCH_KEYS if key not in batch]
        if missing:
            raise KeyError(
                f"P3MLoss needs batch keys {list(_BATCH_KEYS)}; missing {missing}. The training "
                "datamodule must provide fg and bg for the composition loss."
            )
        alpha_shape = tuple(batch["alpha"].shape)
        for name, t in (
            ("local", out["local"]),
            ("fusion", out["fusion"]),
            ("trimap", batch["trimap"]),
        ):
            if tuple(t.shape) != alpha_shape:
                raise ValueError(
                    f"P3MLoss: {name} has shape {tuple(t.shape)} but alpha has {alpha_shape}; "
                    "both must be (B, 1, H, W) at the same resolution."
                )
        kernel = self._kernel()
        levels = self.laplacian_levels
        with no_autocast(out["local"]):
            alpha = batch["alpha"].float()
            classes = trimap_classes(batch["trimap"])
            mask = transition_mask(batch["trimap"])
            local = out["local"].float()
            fusion = out["fusion"].float()

            terms = global_loss(out, classes)
            terms["loss_local_alpha"] = transition_alpha_loss(local, alpha, mask)
            # As in the reference, the target is alpha * T, not alpha: outside T both maps are 0.
            terms["loss_local_lap"] = laplacian_loss(local * mask, alpha * mask, levels, kernel)
            terms["loss_local"] = terms["loss_local_alpha"] + terms["loss_local_lap"]
            terms["loss_fusion_alpha"] = alpha_loss(fusion, alpha)
            terms["loss_fusion_lap"] = laplacian_loss(fusion, alpha, levels, kernel)
            terms["loss_fusion"] = terms["loss_fusion_alpha"] + terms["loss_fusion_lap"]
            terms["loss_comp"] = composition_loss(fusion, batch["image"], batch["fg"], batch["bg"])
            terms["loss"] = (
                self.w_global * terms["loss_global"]
                + self.w_local * terms["loss_local"]
                + self.w_fusion * terms["loss_fusion"]
                + self.w_comp * terms["loss_comp"]
            )
        return terms

    def extra_repr(self) -> str:
        return (
            f"w_global={self.w_global:.4g}, w_local={self.w_local}, w_fusion={self.w_fusion}, "
            f"w_comp={self.w_comp}, laplacian_levels={self.laplacian_levels}"
        )
