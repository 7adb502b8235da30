"""Pieces shared by the adversarial objectives (AlphaGAN; HATT's optional critic)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["HoldsDiscriminator", "bce_real_or_fake"]


def bce_real_or_fake(logits: Tensor, real: bool) -> Tensor:
    """Binary cross-entropy of discriminator ``logits`` against all-real or all-fake, float32."""
    logits = logits.float()
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


class HoldsDiscriminator(nn.Module):
    """A generator loss whose adversarial term scores with a discriminator it does not own.

    The discriminator is held by reference, not registered: the training task owns it, its
    optimiser and its place in the checkpoint (``MattingTask(discriminator=...)``), and this
    loss keeps no parameters.
    """

    def __init__(self, discriminator: nn.Module | None = None) -> None:
        super().__init__()
        self._discriminator = [discriminator] if discriminator is not None else []

    def attach_discriminator(self, discriminator: nn.Module) -> None:
        """Use ``discriminator`` for the adversarial term."""
        self._discriminator = [discriminator]

    @property
    def discriminator(self) -> nn.Module | None:
        """The discriminator, or ``None`` (no adversarial term)."""
        return self._discriminator[0] if self._discriminator else None
