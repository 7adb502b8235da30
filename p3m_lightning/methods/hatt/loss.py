"""The HAttMatting hybrid objective (Qiao et al., CVPR 2020), after the paper (no public code).

Generator (``HATTLoss``): ``w_mse L_MSE + w_ssim L_SSIM [+ w_adv L_adv]`` on the predicted
alpha, all over the whole image (the method is trimap-free):

- ``L_MSE``: mean squared error against the ground-truth alpha.
- ``L_SSIM``: ``1 - SSIM(pred, alpha)``, the structural similarity with an 11x11 Gaussian
  window (sigma 1.5), constants ``C1 = 0.01^2``, ``C2 = 0.03^2`` (data range 1), averaged over
  the window positions that fit inside the image (no padding). It rewards the matte's local
  structure (contrast and correlation), which MSE alone blurs.
- ``L_adv`` (optional): with an ``AlphaDiscriminator`` that judges ``(image, alpha)`` pairs,
  binary cross-entropy of the prediction's patch logits against "real".

Discriminator (``discriminator_loss``): ``0.5 * (BCE(D(image, alpha_gt), 1) +
BCE(D(image, alpha_pred.detach()), 0))``.

Alternation when the adversarial term is on (two optimisers, e.g. Lightning manual
optimisation), per batch:
1. generator step: ``HATTLoss(discriminator)(outputs, batch)["loss"]``, backward, step the
   generator's optimiser only;
2. discriminator step: ``discriminator_loss(discriminator, outputs, batch)`` (the prediction is
   detached inside), backward, step the discriminator's optimiser.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m_lightning.losses.adversarial import HoldsDiscriminator, bce_real_or_fake

__all__ = ["HATTLoss", "discriminator_loss", "gaussian_window", "ssim"]

_C1 = 0.01**2
_C2 = 0.03**2


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """``(1, 1, size, size)`` normalised 2-D Gaussian (the outer product of a 1-D one), float64."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).view(1, 1, size, size)


def ssim(pred: Tensor, target: Tensor, size: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean structural similarity of two single-channel maps in [0, 1].

    Args:
        pred: ``(B, 1, H, W)``.
        target: ``(B, 1, H, W)``; ``H`` and ``W`` at least ``size``.
        size: Gaussian window side.
        sigma: Gaussian standard deviation.

    Returns:
        Scalar float32 in [-1, 1], the mean over every valid window position and sample.
    """
    if min(pred.shape[-2:]) < size:
        raise ValueError(
            f"ssim needs maps of at least {size}x{size} pixels, got {tuple(pred.shape[-2:])}; "
            "train on larger crops or pass a smaller window size."
        )
    # Float64 statistics: on flat regions E[x^2] - E[x]^2 cancels to float32 noise (~1e-7)
    # that is not small next to C2 = 9e-4, and flat regions are most of a matte.
    pred = pred.double()
    target = target.double()
    window = gaussian_window(size, sigma).to(pred.device, torch.float64)
    mu_p = F.conv2d(pred, window)
    mu_t = F.conv2d(target, window)
    var_p = F.conv2d(pred * pred, window) - mu_p**2
    var_t = F.conv2d(target * target, window) - mu_t**2
    cov = F.conv2d(pred * target, window) - mu_p * mu_t
    luminance = (2 * mu_p * mu_t + _C1) / (mu_p**2 + mu_t**2 + _C1)
    structure = (2 * cov + _C2) / (var_p + var_t + _C2)
    return (luminance * structure).mean().float()


def discriminator_loss(
    discriminator: nn.Module, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
) -> Tensor:
    """The critic's loss: ground-truth pairs are real, predicted (detached) pairs fake.

    Args:
        discriminator: called as ``discriminator(image, alpha)`` -> patch logits.
        outputs: ``alpha`` ``(B, 1, H, W)`` predicted, in [0, 1].
        batch: ``image`` ``(B, 3, H, W)`` normalised, ``alpha`` ``(B, 1, H, W)`` in [0, 1].

    Returns:
        Scalar float32 ``0.5 * (BCE(real, 1) + BCE(fake, 0))``.
    """
    with torch.autocast(device_type=batch["alpha"].device.type, enabled=False):
        real = discriminator(batch["image"].float(), batch["alpha"].float())
        fake = discriminator(batch["image"].float(), outputs["alpha"].detach().float())
        return 0.5 * (bce_real_or_fake(real, True) + bce_real_or_fake(fake, False))


class HATTLoss(HoldsDiscriminator):
    """Generator loss ``w_mse L_MSE + w_ssim L_SSIM + w_adv L_adv``.

    The discriminator is held by reference (not registered as a submodule), so this loss has
    no parameters of its own and its state dict stays empty.

    Args:
        discriminator: an ``AlphaDiscriminator``; ``None`` (default) leaves ``L_adv`` out.
        w_mse: weight of the mean squared error.
        w_ssim: weight of ``1 - SSIM``.
        w_adv: weight of the adversarial term (used only with a discriminator).
        ssim_window: side of the SSIM Gaussian window.
    """

    def __init__(
        self,
        discriminator: nn.Module | None = None,
        w_mse: float = 1.0,
        w_ssim: float = 1.0,
        w_adv: float = 1.0,
        ssim_window: int = 11,
    ) -> None:
        super().__init__(discriminator)
        self.w_mse = w_mse
        self.w_ssim = w_ssim
        self.w_adv = w_adv
        self.ssim_window = ssim_window

    def forward(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """Compute every term for one batch.

        Args:
            outputs: ``alpha`` ``(B, 1, H, W)`` in [0, 1].
            batch: ``alpha`` ``(B, 1, H, W)`` in [0, 1]; ``image`` ``(B, 3, H, W)`` when a
                discriminator is set.

        Returns:
            Scalar float32 ``loss`` (weighted total), unweighted ``loss_mse``, ``loss_ssim`` and,
            with a discriminator, ``loss_adv``.
        """
        missing = [k for k in ("alpha",) if k not in batch]
        missing += [f"outputs.{k}" for k in ("alpha",) if k not in outputs]
        if self.discriminator is not None and "image" not in batch:
            missing.append("image")
        if missing:
            raise KeyError(f"HATTLoss: missing {missing}.")
        with torch.autocast(device_type=batch["alpha"].device.type, enabled=False):
            pred = outputs["alpha"].float()
            alpha = batch["alpha"].float()
            terms = {"loss_mse": F.mse_loss(pred, alpha)}
            terms["loss_ssim"] = 1.0 - ssim(pred, alpha, self.ssim_window)
            total = self.w_mse * terms["loss_mse"] + self.w_ssim * terms["loss_ssim"]
            if self.discriminator is not None:
                logits = self.discriminator(batch["image"].float(), pred)
                terms["loss_adv"] = bce_real_or_fake(logits, True)
                total = total + self.w_adv * terms["loss_adv"]
            terms["loss"] = total
        return terms

    def extra_repr(self) -> str:
        return (
            f"w_mse={self.w_mse}, w_ssim={self.w_ssim}, w_adv={self.w_adv}, "
            f"adversarial={self.discriminator is not None}, ssim_window={self.ssim_window}"
        )
