"""The AlphaGAN objectives (Lutz et al., BMVC 2018; no official code).

Generator (``AlphaGANLoss``): DIM's alpha-prediction and compositional losses on the trimap's
unknown region (``losses.dim``) plus an adversarial term: the predicted alpha composites the
true foreground over *another* image's background (the batch's backgrounds rolled by one), and
the generator is rewarded when the discriminator calls that composite real
(binary cross-entropy with logits against 1).

Discriminator (``discriminator_loss``): real = the batch image, fake = the same kind of
composite with the generator's alpha detached; ``0.5 * (BCE(real, 1) + BCE(fake, 0))``.

Alternation (one training step, two optimisers, e.g. Lightning manual optimisation):
1. generator step: ``AlphaGANLoss(discriminator)(outputs, batch)["loss"]``, backward,
   step the generator's optimiser only (the discriminator's gradients are zeroed/ignored);
2. discriminator step: ``discriminator_loss(discriminator, outputs, batch)`` (alpha
   detached inside), backward, step the discriminator's optimiser.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from p3m_lightning.losses.adversarial import HoldsDiscriminator, bce_real_or_fake
from p3m_lightning.methods.dim.loss import DIMLoss

__all__ = ["AlphaGANLoss", "composite_on_new_background", "discriminator_loss"]


def composite_on_new_background(alpha: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
    """``alpha F + (1 - alpha) B'`` with ``B'`` the batch's backgrounds rolled by one sample
    (the sample's own background when the batch has one sample).

    Args:
        alpha: ``(B, 1, H, W)`` in [0, 1].
        batch: ``fg``, ``bg`` ``(B, 3, H, W)`` ImageNet-normalised.

    Returns:
        ``(B, 3, H, W)`` composite, normalised like the inputs (compositing is affine).
    """
    new_bg = torch.roll(batch["bg"], shifts=1, dims=0)
    return alpha * batch["fg"] + (1 - alpha) * new_bg


def discriminator_loss(
    discriminator: nn.Module, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
) -> Tensor:
    """The PatchGAN's loss: ``0.5 * (BCE(D(real), 1) + BCE(D(fake), 0))``.

    Args:
        discriminator: called as ``discriminator(image, trimap)`` -> patch logits.
        outputs: ``alpha_pred`` ``(B, 1, H, W)`` (detached here).
        batch: ``image``, ``fg``, ``bg``, ``trimap``.

    Returns:
        Scalar float32.
    """
    fake = composite_on_new_background(outputs["alpha_pred"].detach(), batch)
    real_logits = discriminator(batch["image"], batch["trimap"])
    fake_logits = discriminator(fake, batch["trimap"])
    return 0.5 * (bce_real_or_fake(real_logits, True) + bce_real_or_fake(fake_logits, False))


class AlphaGANLoss(HoldsDiscriminator):
    """Generator loss ``w_alpha loss_alpha + w_comp loss_comp + w_adv loss_adv``.

    The discriminator is held by reference (not registered as a submodule), so this loss has
    no parameters and its state dict stays empty.

    Args:
        discriminator: the PatchGAN; ``None`` disables the adversarial term.
        w_alpha: weight of the unknown-region alpha loss.
        w_comp: weight of the unknown-region compositional loss.
        w_adv: weight of the adversarial term.
    """

    def __init__(
        self,
        discriminator: nn.Module | None = None,
        w_alpha: float = 1.0,
        w_comp: float = 1.0,
        w_adv: float = 1.0,
    ) -> None:
        super().__init__(discriminator)
        self.dim = DIMLoss(w_alpha=w_alpha, w_comp=w_comp, w_refine=0.0)
        self.w_adv = w_adv

    def forward(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """Compute the generator loss.

        Args:
            outputs: ``alpha_pred`` ``(B, 1, H, W)`` in [0, 1].
            batch: ``image``, ``fg``, ``bg``, ``alpha``, ``trimap`` (project vocabulary).

        Returns:
            ``loss``, ``loss_alpha``, ``loss_comp`` and, with a discriminator, ``loss_adv``.
        """
        terms = self.dim({"alpha_pred": outputs["alpha_pred"]}, batch)
        if self.discriminator is not None:
            fake = composite_on_new_background(outputs["alpha_pred"], batch)
            terms["loss_adv"] = bce_real_or_fake(self.discriminator(fake, batch["trimap"]), True)
            terms["loss"] = terms["loss"] + self.w_adv * terms["loss_adv"]
        return terms
