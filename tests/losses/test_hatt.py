"""HAttMatting's hybrid objective on inputs whose terms can be worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from p3m_lightning.methods.hatt.loss import HATTLoss, discriminator_loss, gaussian_window, ssim
from p3m_lightning.methods.hatt.network import AlphaDiscriminator

SIZE = 32


def flat(value: float, channels: int = 1) -> torch.Tensor:
    return torch.full((1, channels, SIZE, SIZE), value)


class _ConstantCritic(nn.Module):
    """Patch logits equal to the mean alpha minus 0.5: 0 for a flat 0.5 matte."""

    def forward(self, image: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        return alpha.mean(dim=(1, 2, 3), keepdim=True) - 0.5


def test_gaussian_window_sums_to_one_and_peaks_in_the_middle() -> None:
    w = gaussian_window(11, 1.5)
    assert w.shape == (1, 1, 11, 11)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert w[0, 0, 5, 5] == w.max()
    # The centre over its neighbour is exp(-1 / (2 * 1.5^2)) along one axis.
    assert (w[0, 0, 5, 6] / w[0, 0, 5, 5]).item() == pytest.approx(math.exp(-1 / 4.5), rel=1e-5)


def test_ssim_of_flat_maps_is_the_luminance_term() -> None:
    c1 = 0.01**2
    expected = (2 * 0.5 * 1.0 + c1) / (0.25 + 1.0 + c1)
    assert ssim(flat(0.5), flat(1.0)).item() == pytest.approx(expected, rel=1e-5)
    target = torch.rand(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    assert ssim(target, target).item() == pytest.approx(1.0, abs=1e-5)


def test_ssim_of_a_scaled_map_on_one_window() -> None:
    # 11x11 maps: a single window. pred = 2 t doubles the mean and the deviation.
    t = torch.rand(1, 1, 11, 11, generator=torch.Generator().manual_seed(1))
    w = gaussian_window()
    mu = (w * t).sum()
    var = (w * t * t).sum() - mu**2
    c1, c2 = 0.01**2, 0.03**2
    expected = (4 * mu**2 + c1) / (5 * mu**2 + c1) * (4 * var + c2) / (5 * var + c2)
    assert ssim(2 * t, t).item() == pytest.approx(expected.item(), rel=1e-4)


def test_ssim_rejects_maps_smaller_than_the_window() -> None:
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_mse_ssim_and_total() -> None:
    terms = HATTLoss()({"alpha": flat(0.7)}, {"alpha": flat(0.5)})
    assert terms["loss_mse"].item() == pytest.approx(0.04, rel=1e-5)
    c1 = 0.01**2
    assert terms["loss_ssim"].item() == pytest.approx(
        1 - (2 * 0.35 + c1) / (0.49 + 0.25 + c1), rel=1e-4
    )
    assert "loss_adv" not in terms
    expected = terms["loss_mse"] + terms["loss_ssim"]
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    weighted = HATTLoss(w_mse=2.0, w_ssim=0.0)({"alpha": flat(0.7)}, {"alpha": flat(0.5)})
    assert weighted["loss"].item() == pytest.approx(0.08, rel=1e-5)


def test_adversarial_terms_with_a_constant_critic() -> None:
    critic = _ConstantCritic()
    batch = {"image": flat(0.0, 3), "alpha": flat(0.5)}
    outputs = {"alpha": flat(0.5)}
    terms = HATTLoss(critic, w_adv=0.5)(outputs, batch)
    # A zero logit costs log 2 whichever the label.
    assert terms["loss_adv"].item() == pytest.approx(math.log(2), rel=1e-6)
    assert terms["loss"].item() == pytest.approx(0.5 * math.log(2), abs=1e-5)
    assert discriminator_loss(critic, outputs, batch).item() == pytest.approx(math.log(2))
    # Real logit +0.5 (gt alpha 1), fake logit 0: 0.5 * (softplus(-0.5) + log 2).
    real = {"image": flat(0.0, 3), "alpha": flat(1.0)}
    expected = 0.5 * (math.log1p(math.exp(-0.5)) + math.log(2))
    assert discriminator_loss(critic, outputs, real).item() == pytest.approx(expected, rel=1e-6)


def test_discriminator_loss_does_not_reach_the_generator() -> None:
    pred = flat(0.5).requires_grad_()
    critic = AlphaDiscriminator(width=4)
    loss = discriminator_loss(critic, {"alpha": pred}, {"image": flat(0.0, 3), "alpha": flat(1.0)})
    loss.backward()
    assert pred.grad is None and critic.net[0].weight.grad is not None


def test_rejects_missing_keys() -> None:
    with pytest.raises(KeyError, match="image"):
        HATTLoss(_ConstantCritic())({"alpha": flat(0.5)}, {"alpha": flat(0.5)})
