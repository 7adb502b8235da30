"""Tests of the GCA-Matting objective with numbers checked by hand."""

from __future__ import annotations

import pytest
import torch

from p3m_lightning.methods.gca.loss import GCALoss, unknown_l1_loss


def test_unknown_l1_by_hand() -> None:
    pred = torch.tensor([0.2, 0.5, 0.9, 1.0]).view(1, 1, 1, 4)
    alpha = torch.tensor([0.0, 0.5, 1.0, 0.0]).view(1, 1, 1, 4)
    trimap = torch.tensor([0.0, 128.0, 128.0, 255.0]).view(1, 1, 1, 4)
    # Unknown pixels 1 and 2: (|0.5 - 0.5| + |0.9 - 1.0|) / 2 = 0.05; known errors ignored.
    terms = GCALoss()({"alpha_raw": pred}, {"alpha": alpha, "trimap": trimap})
    assert terms["loss"].item() == pytest.approx(0.05)
    assert terms["loss_alpha"].item() == pytest.approx(0.05)


def test_empty_unknown_region_gives_zero() -> None:
    pred = torch.rand(1, 1, 4, 4)
    assert unknown_l1_loss(pred, torch.zeros_like(pred), torch.zeros_like(pred)).item() == 0.0


def test_missing_keys_are_named() -> None:
    with pytest.raises(KeyError, match="trimap"):
        GCALoss()({"alpha_raw": torch.zeros(1, 1, 2, 2)}, {"alpha": torch.zeros(1, 1, 2, 2)})
    with pytest.raises(KeyError, match="alpha_raw"):
        GCALoss()({}, {"alpha": torch.zeros(1, 1, 2, 2), "trimap": torch.zeros(1, 1, 2, 2)})
