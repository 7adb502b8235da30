"""Tests of the AlphaGAN objectives with numbers checked by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from p3m_lightning.methods.alphagan.loss import (
    AlphaGANLoss,
    composite_on_new_background,
    discriminator_loss,
)


class ConstantCritic(nn.Module):
    """A stand-in discriminator: logit 0 for every patch (probability 0.5)."""

    def forward(self, image: Tensor, trimap: Tensor) -> Tensor:
        return image[:, :1, ::2, ::2] * 0


def _batch() -> dict[str, Tensor]:
    fg = torch.stack([torch.full((3, 2, 2), 1.0), torch.full((3, 2, 2), 2.0)])
    bg = torch.stack([torch.full((3, 2, 2), -1.0), torch.full((3, 2, 2), -2.0)])
    alpha = torch.full((2, 1, 2, 2), 0.5)
    return {
        "fg": fg,
        "bg": bg,
        "alpha": alpha,
        "image": 0.5 * fg + 0.5 * bg,
        "trimap": torch.full((2, 1, 2, 2), 128.0),
    }


def test_composite_uses_the_next_samples_background() -> None:
    b = _batch()
    comp = composite_on_new_background(torch.full((2, 1, 2, 2), 0.5), b)
    # Sample 0 gets sample 1's background: 0.5 * 1 + 0.5 * (-2) = -0.5; sample 1: 0.5 * 2 - 0.5.
    assert comp[0].unique().tolist() == [-0.5] and comp[1].unique().tolist() == [0.5]


def test_adversarial_terms_with_a_constant_critic() -> None:
    b = _batch()
    out = {"alpha_pred": b["alpha"].clone()}
    # Logit 0 everywhere: every BCE term is log 2.
    assert discriminator_loss(ConstantCritic(), out, b).item() == pytest.approx(math.log(2))
    terms = AlphaGANLoss(ConstantCritic(), w_adv=2.0)(out, b)
    assert terms["loss_adv"].item() == pytest.approx(math.log(2))
    assert terms["loss_alpha"].item() == pytest.approx(1e-6, abs=1e-7)
    expected = terms["loss_alpha"] + terms["loss_comp"] + 2 * math.log(2)
    assert terms["loss"].item() == pytest.approx(expected.item())
    assert "loss_adv" not in AlphaGANLoss()(out, b)
