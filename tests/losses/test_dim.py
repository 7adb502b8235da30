"""Tests of the DIM objective with numbers checked by hand."""

from __future__ import annotations

import pytest
import torch

from p3m_lightning.methods.dim.loss import DIMLoss, masked_charbonnier

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def test_masked_charbonnier_by_hand() -> None:
    pred = torch.tensor([0.2, 0.5, 0.9, 1.0]).view(1, 1, 1, 4)
    target = torch.tensor([0.0, 0.1, 1.0, 0.0]).view(1, 1, 1, 4)
    mask = torch.tensor([0.0, 1.0, 1.0, 0.0]).view(1, 1, 1, 4)
    # (0.4 + 0.1) / 2
    assert masked_charbonnier(pred, target, mask).item() == pytest.approx(0.25, abs=1e-6)
    assert masked_charbonnier(pred, target, torch.zeros_like(mask)).item() == 0.0


def test_terms_and_weights() -> None:
    alpha = torch.full((1, 1, 2, 2), 0.5)
    trimap = torch.tensor([[0.0, 128.0], [128.0, 255.0]]).view(1, 1, 2, 2)
    fg, bg = torch.full((1, 3, 2, 2), 0.8), torch.full((1, 3, 2, 2), 0.2)
    image = alpha * fg + (1 - alpha) * bg
    batch = {
        "image": (image - MEAN) / STD,
        "fg": (fg - MEAN) / STD,
        "bg": (bg - MEAN) / STD,
        "alpha": alpha,
        "trimap": trimap,
    }
    outputs = {
        "alpha_pred": torch.full((1, 1, 2, 2), 0.7),
        "alpha_refined": torch.full((1, 1, 2, 2), 0.6),
    }
    terms = DIMLoss()(outputs, batch)
    assert terms["loss_alpha"].item() == pytest.approx(0.2, abs=1e-5)
    # 0.7 * 0.8 + 0.3 * 0.2 = 0.62 vs 0.5.
    assert terms["loss_comp"].item() == pytest.approx(0.12, abs=1e-5)
    assert terms["loss_refine"].item() == pytest.approx(0.1, abs=1e-5)
    assert terms["loss"].item() == pytest.approx(0.5 * 0.2 + 0.5 * 0.12 + 0.1, abs=1e-5)
    no_refine = DIMLoss()({"alpha_pred": outputs["alpha_pred"]}, batch)
    assert "loss_refine" not in no_refine
    assert no_refine["loss"].item() == pytest.approx(0.16, abs=1e-5)
