"""Tests of the FBA objective with numbers checked by hand."""

from __future__ import annotations

import pytest
import torch

from p3m_lightning.methods.fba.loss import FBALoss, binomial_kernel, exclusion_loss, gradient_loss
from p3m_lightning.normalization import to_rgb01

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _norm(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD


def test_exclusion_and_gradient_by_hand() -> None:
    # F rises by 0.5 per column, B by 0.2 per column; no vertical change.
    col = torch.arange(3.0)
    fg = (0.5 * col).expand(1, 1, 2, 3)
    bg = (0.2 * col).expand(1, 1, 2, 3)
    assert exclusion_loss(fg, bg).item() == pytest.approx(0.5 * 0.2)
    assert gradient_loss(fg, bg).item() == pytest.approx(0.3)


def test_binomial_kernel_and_rgb_conversion() -> None:
    k = binomial_kernel()
    assert k.sum().item() == pytest.approx(1.0) and k[0, 0, 2, 2].item() == pytest.approx(36 / 256)
    x = torch.rand(1, 3, 2, 2)
    assert torch.allclose(to_rgb01(_norm(x)), x, atol=1e-6)


def test_terms_on_simple_inputs() -> None:
    alpha = torch.full((1, 1, 4, 4), 0.5)
    fg, bg = torch.full((1, 3, 4, 4), 0.8), torch.full((1, 3, 4, 4), 0.2)
    image = alpha * fg + (1 - alpha) * bg
    batch = {"image": _norm(image), "fg": _norm(fg), "bg": _norm(bg), "alpha": alpha}
    outputs = {"alpha_raw": alpha + 0.1, "fg_raw": fg, "bg_raw": bg - 0.1}
    terms = FBALoss()(outputs, batch)
    assert terms["loss_alpha_l1"].item() == pytest.approx(0.1, abs=1e-6)
    # Composite with alpha 0.6: 0.6 * 0.8 + 0.4 * 0.2 = 0.56 vs 0.5.
    assert terms["loss_alpha_comp"].item() == pytest.approx(0.06, abs=1e-6)
    assert terms["loss_alpha_grad"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["loss_fb_l1"].item() == pytest.approx(0.1, abs=1e-6)
    # 0.5 * 0.8 + 0.5 * 0.1 = 0.45 vs 0.5.
    assert terms["loss_fb_comp"].item() == pytest.approx(0.05, abs=1e-6)
    assert terms["loss_fb_excl"].item() == pytest.approx(0.0, abs=1e-6)
    # Constant offsets live only in the pyramid's low-pass level: 0.1 for alpha, B's 0.1.
    assert terms["loss_alpha_lap"].item() == pytest.approx(0.1, abs=1e-5)
    assert terms["loss_fb_lap"].item() == pytest.approx(0.1, abs=1e-5)
    expected = sum(v.item() for k, v in terms.items() if k not in ("loss", "loss_alpha_grad"))
    assert terms["loss"].item() == pytest.approx(expected, rel=1e-6)


def test_weights_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown term weights"):
        FBALoss(weights={"alpha_l2": 1.0})
    assert FBALoss(weights={"alpha_grad": 2.0}).weights["alpha_grad"] == 2.0
