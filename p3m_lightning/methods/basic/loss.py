"""The supervised Background Matting objective (after the official ``train_adobe.py`` and
``loss_functions.py``).

``loss = L_alpha + 2 L_fg + L_comp + L_grad``, every term in the official units: alpha and
colours mapped to [-1, 1] (so each term is twice its value in [0, 1] units), per-sample sums
divided by the sample's pixel count (``H x W``, or the masked pixel count), averaged over
the batch. Colour terms sum over the 3 channels per pixel, as the official normalisation
divides a 3-channel sum by a 1-channel mask.

- ``L_alpha``: L1 between predicted and true alpha over the whole image.
- ``L_fg``: L1 between predicted and true foreground where the true alpha > 0.005 (the
  official ``alpha > -0.99`` in [-1, 1]); a sample without such pixels adds 0.
- ``L_comp``: L1 between the image and ``a' F'' + (1 - a') B`` with the true background B,
  where ``F''`` is the image where ``a' > 0.975`` and the predicted foreground elsewhere.
- ``L_grad``: L1 between the Sobel x and y responses (zero padding) of predicted and true
  alpha, the two directions summed.

The official second, self-supervised adversarial stage (real videos, a frozen teacher and a
patch discriminator) has no counterpart here: it needs unlabelled captures with their
plates, which P3M-10k does not have.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m_lightning.normalization import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["BASICLoss", "masked_l1", "sobel_loss"]

_BATCH_KEYS = ("image", "alpha", "fg", "bg")
_OUTPUT_KEYS = ("alpha", "fg_raw")
_FG_MASK_ABOVE = 0.005  # official: alpha > -0.99 in [-1, 1]
_FG_FROM_IMAGE_ABOVE = 0.975  # official: alpha_pred > 0.95 in [-1, 1]
_EPS = 1e-6  # official normaliser's epsilon


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """The official ``normalized_l1_loss``: per sample ``sum |pred - target| * mask /
    (sum mask + 1e-6)``, summed over samples whose mask is not empty, divided by B.

    Args:
        pred: ``(B, C, H, W)``.
        target: ``(B, C, H, W)``.
        mask: ``(B, 1, H, W)`` in {0, 1}; the channel sum is divided by the pixel count.

    Returns:
        Scalar.
    """
    per_sample = ((pred - target).abs() * mask).flatten(1).sum(1)
    count = mask.flatten(1).sum(1)
    per_sample = torch.where(count > 0, per_sample / (count + _EPS), torch.zeros_like(count))
    return per_sample.sum() / pred.shape[0]


def _sobel(x: Tensor) -> tuple[Tensor, Tensor]:
    kx = x.new_tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]).view(1, 1, 3, 3)
    ky = kx.transpose(2, 3)
    return F.conv2d(x, kx, padding=1), F.conv2d(x, ky, padding=1)


def sobel_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Official alpha gradient loss: whole-image ``masked_l1`` of the Sobel x and y responses
    (3x3, zero padding, as cross-correlations), summed.

    Args:
        pred: ``(B, 1, H, W)``.
        target: ``(B, 1, H, W)``.
    """
    ones = torch.ones_like(target)
    (px, py), (tx, ty) = _sobel(pred), _sobel(target)
    return masked_l1(px, tx, ones) + masked_l1(py, ty, ones)


def _to_signed(x: Tensor) -> Tensor:
    """ImageNet-normalised ``(B, 3, H, W)`` -> RGB in [-1, 1], float32."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return 2 * (x.float() * std + mean) - 1


class BASICLoss(nn.Module):
    """Background Matting's supervised objective (see the module docstring).

    Args:
        w_alpha: weight of ``L_alpha`` (1 officially).
        w_fg: weight of ``L_fg`` (2 officially).
        w_comp: weight of ``L_comp`` (1 officially).
        w_grad: weight of ``L_grad`` (1 officially).
    """

    def __init__(
        self, w_alpha: float = 1.0, w_fg: float = 2.0, w_comp: float = 1.0, w_grad: float = 1.0
    ) -> None:
        super().__init__()
        self.w_alpha, self.w_fg, self.w_comp, self.w_grad = w_alpha, w_fg, w_comp, w_grad

    def forward(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """Compute every term for one batch.

        Args:
            outputs: ``alpha`` ``(B, 1, H, W)`` in [0, 1] and ``fg_raw`` ``(B, 3, H, W)`` RGB
                in [0, 1] units, unclipped (``BASICNet``).
            batch: ``image``, ``fg``, ``bg`` ``(B, 3, H, W)`` ImageNet-normalised, ``alpha``
                ``(B, 1, H, W)`` in [0, 1].

        Returns:
            Scalar float32 tensors: ``loss`` (weighted total) and the unweighted
            ``loss_alpha``, ``loss_fg``, ``loss_comp``, ``loss_grad``.
        """
        missing = [k for k in _BATCH_KEYS if k not in batch]
        missing += [f"outputs.{k}" for k in _OUTPUT_KEYS if k not in outputs]
        if missing:
            raise KeyError(
                f"BASICLoss needs batch keys {list(_BATCH_KEYS)} (the datamodule must provide "
                f"fg and bg) and outputs {list(_OUTPUT_KEYS)} (BASICNet); missing {missing}."
            )
        with torch.autocast(device_type=batch["alpha"].device.type, enabled=False):
            a_true = batch["alpha"].float()
            a_pred = outputs["alpha"].float()
            ones = torch.ones_like(a_true)
            image, fg, bg = (_to_signed(batch[k]) for k in ("image", "fg", "bg"))
            fg_pred = 2 * outputs["fg_raw"].float() - 1
            fg_for_comp = torch.where(a_pred > _FG_FROM_IMAGE_ABOVE, image, fg_pred)
            comp = a_pred * fg_for_comp + (1 - a_pred) * bg
            terms = {
                "loss_alpha": masked_l1(2 * a_pred - 1, 2 * a_true - 1, ones),
                "loss_fg": masked_l1(fg_pred, fg, (a_true > _FG_MASK_ABOVE).float()),
                "loss_comp": masked_l1(comp, image, ones),
                "loss_grad": sobel_loss(2 * a_pred - 1, 2 * a_true - 1),
            }
            terms["loss"] = (
                self.w_alpha * terms["loss_alpha"]
                + self.w_fg * terms["loss_fg"]
                + self.w_comp * terms["loss_comp"]
                + self.w_grad * terms["loss_grad"]
            )
        return terms

    def extra_repr(self) -> str:
        return (
            f"w_alpha={self.w_alpha}, w_fg={self.w_fg}, w_comp={self.w_comp}, w_grad={self.w_grad}"
        )
