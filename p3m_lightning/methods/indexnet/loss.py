"""The IndexNet Matting objective, the official ``weighted_loss`` with ``wl = 0.5``
(``scripts/hltrainval.py:164-182`` at poppinace/indexnet_matting@4beb06a): the alpha-prediction
+ compositional loss of Deep Image Matting on the trimap's unknown region U, every quantity in
[0, 1] (the official ``Normalize`` scales image, alpha, F and B by ``IMG_SCALE = 1/255``,
``hldataset.py:154-169``, ``hltrainval.py:58``). With ``m`` the unknown mask and ``eps = 1e-6``:

- ``loss_alpha``: per sample ``sum_p sqrt(((a'_p - a_p) m_p)^2 + eps^2) / sum_p m_p``,
  averaged over the batch.
- ``loss_comp``: per sample ``sum_rgb sum_p sqrt(((a'_p F_p + (1 - a'_p) B_p - I_p) m_p)^2 +
  eps^2) / sum_p m_p``, averaged over the batch.
- ``loss = 0.5 loss_alpha + 0.5 loss_comp``.

As officially, the mask is applied inside the square root, so every pixel outside U adds the
constant ``eps`` (no gradient). A sample without unknown pixels is divided by 1 instead of 0
(the official code would divide by zero there).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from p3m_lightning.losses.terms import transition_mask
from p3m_lightning.normalization import IMAGENET_STD

__all__ = ["IndexNetLoss", "unknown_alpha_loss", "unknown_composition_loss"]

_EPS = 1e-6


def _per_sample_mean(err: Tensor, unknown: Tensor) -> Tensor:
    """``(1/B) sum_b sum_{c,p} err / sum_p unknown``: channels summed, samples averaged."""
    per_sample = err.sum(dim=(1, 2, 3)) / unknown.sum(dim=(1, 2, 3)).clamp_min(1.0)
    return per_sample.mean()


def unknown_alpha_loss(pred: Tensor, alpha: Tensor, unknown: Tensor, eps: float = _EPS) -> Tensor:
    """Charbonnier alpha loss on the unknown region, normalised per sample.

    Args:
        pred: ``(B, 1, H, W)`` predicted alpha (any range).
        alpha: ``(B, 1, H, W)`` ground truth in [0, 1].
        unknown: ``(B, 1, H, W)`` mask in {0, 1}.
        eps: Charbonnier epsilon.

    Returns:
        Scalar float32, >= 0.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        m = unknown.float()
        err = torch.sqrt(((pred.float() - alpha.float()) * m) ** 2 + eps**2)
        return _per_sample_mean(err, m)


def unknown_composition_loss(
    pred: Tensor, image: Tensor, fg: Tensor, bg: Tensor, unknown: Tensor, eps: float = _EPS
) -> Tensor:
    """Charbonnier composition loss on the unknown region in [0, 1] RGB units.

    ``image``, ``fg`` and ``bg`` are ImageNet-normalised; since ``pred F + (1 - pred) B`` is
    an affine combination, the difference in [0, 1] units is the normalised difference times
    ``std`` (the mean cancels).

    Args:
        pred: ``(B, 1, H, W)`` predicted alpha (any range).
        image: ``(B, 3, H, W)`` normalised composite.
        fg: ``(B, 3, H, W)`` normalised foreground.
        bg: ``(B, 3, H, W)`` normalised background.
        unknown: ``(B, 1, H, W)`` mask in {0, 1}.
        eps: Charbonnier epsilon.

    Returns:
        Scalar float32, >= 0.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        a, m = pred.float(), unknown.float()
        std = torch.tensor(IMAGENET_STD, device=a.device).view(1, 3, 1, 1)
        diff = (a * fg.float() + (1.0 - a) * bg.float() - image.float()) * std
        err = torch.sqrt((diff * m) ** 2 + eps**2)
        return _per_sample_mean(err, m)


class IndexNetLoss(nn.Module):
    """``w_alpha * loss_alpha + w_comp * loss_comp`` on ``alpha_raw`` (defaults 0.5 / 0.5).

    Args:
        w_alpha: weight of the alpha-prediction term.
        w_comp: weight of the compositional term.
    """

    batch_keys = ("image", "alpha", "trimap", "fg", "bg")

    def __init__(self, w_alpha: float = 0.5, w_comp: float = 0.5) -> None:
        super().__init__()
        self.w_alpha = w_alpha
        self.w_comp = w_comp

    def forward(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """Compute the loss.

        Args:
            outputs: ``alpha_raw`` ``(B, 1, H, W)``.
            batch: ``image``, ``fg``, ``bg`` ``(B, 3, H, W)`` normalised; ``alpha``
                ``(B, 1, H, W)`` in [0, 1]; ``trimap`` ``(B, 1, H, W)`` in [0, 255].

        Returns:
            ``loss`` (weighted total), ``loss_alpha``, ``loss_comp``: scalar float32.
        """
        missing = [k for k in self.batch_keys if k not in batch]
        if missing:
            raise KeyError(
                f"{type(self).__name__} needs batch keys {list(self.batch_keys)}; missing "
                f"{missing}. The training datamodule must provide fg and bg."
            )
        if "alpha_raw" not in outputs:
            raise KeyError(
                f"{type(self).__name__} needs the output 'alpha_raw'; got {sorted(outputs)}."
            )
        pred = outputs["alpha_raw"]
        unknown = transition_mask(batch["trimap"])
        terms = {
            "loss_alpha": unknown_alpha_loss(pred, batch["alpha"], unknown),
            "loss_comp": unknown_composition_loss(
                pred, batch["image"], batch["fg"], batch["bg"], unknown
            ),
        }
        terms["loss"] = self.w_alpha * terms["loss_alpha"] + self.w_comp * terms["loss_comp"]
        return terms

    def extra_repr(self) -> str:
        return f"w_alpha={self.w_alpha}, w_comp={self.w_comp}"
