"""Tests of the IndexNet (DIM-style) objective with numbers checked by hand."""

from __future__ import annotations

import pytest
import torch

from p3m_lightning.methods.indexnet.loss import (
    IndexNetLoss,
    unknown_alpha_loss,
    unknown_composition_loss,
)


def _two_samples() -> dict[str, torch.Tensor]:
    # Sample 0: one unknown pixel (error 0.5). Sample 1: two unknown pixels (errors 0.25, 0.75).
    pred = torch.tensor([[0.5, 0.9], [0.25, 0.75]]).view(2, 1, 1, 2)
    alpha = torch.tensor([[0.0, 0.0], [0.0, 0.0]]).view(2, 1, 1, 2)
    trimap = torch.tensor([[128.0, 0.0], [100.0, 200.0]]).view(2, 1, 1, 2)
    return {"pred": pred, "alpha": alpha, "trimap": trimap}


def test_alpha_term_is_normalised_per_sample() -> None:
    s = _two_samples()
    unknown = (s["trimap"] % 255 != 0).float()
    # (0.5 / 1 + (0.25 + 0.75) / 2) / 2 = 0.5
    assert unknown_alpha_loss(s["pred"], s["alpha"], unknown).item() == pytest.approx(0.5, abs=1e-6)


def test_composition_term_in_8bit_units() -> None:
    pred = torch.full((1, 1, 1, 1), 0.5)
    fg, bg = torch.ones(1, 3, 1, 1), -torch.ones(1, 3, 1, 1)
    image = torch.full((1, 3, 1, 1), 0.2)
    # Normalised composite 0 vs 0.2 -> |0.2| * 255 * std per channel, summed over RGB.
    expected = 0.2 * 255 * (0.229 + 0.224 + 0.225)
    got = unknown_composition_loss(pred, image, fg, bg, torch.ones(1, 1, 1, 1))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_total_weights_and_empty_region() -> None:
    s = _two_samples()
    fg, bg = torch.ones(2, 3, 1, 2), -torch.ones(2, 3, 1, 2)
    image = s["pred"] * fg + (1 - s["pred"]) * bg  # perfect composition: loss_comp ~ 0
    batch = {"image": image, "alpha": s["alpha"], "trimap": s["trimap"], "fg": fg, "bg": bg}
    terms = IndexNetLoss()({"alpha_raw": s["pred"]}, batch)
    assert terms["loss_comp"].item() == pytest.approx(3e-6, abs=1e-7)
    assert terms["loss"].item() == pytest.approx(
        0.5 * terms["loss_alpha"].item() + 0.5 * terms["loss_comp"].item()
    )
    empty = torch.zeros(1, 1, 2, 2)
    assert unknown_alpha_loss(torch.rand(1, 1, 2, 2), empty, empty).item() == 0.0


def test_missing_keys_are_named() -> None:
    with pytest.raises(KeyError, match="fg"):
        IndexNetLoss()({"alpha_raw": torch.zeros(1, 1, 2, 2)}, {"alpha": torch.zeros(1, 1, 2, 2)})
