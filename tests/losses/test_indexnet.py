"""Tests of the IndexNet (DIM-style) objective: numbers checked by hand, and the official
``weighted_loss`` (scripts/hltrainval.py:164-182 at poppinace/indexnet_matting@4beb06a)
transcribed on [0, 1] inputs."""

from __future__ import annotations

import pytest
import torch

from p3m_lightning.methods.indexnet.loss import (
    IndexNetLoss,
    unknown_alpha_loss,
    unknown_composition_loss,
)

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _norm(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD


def _official_weighted_loss(pd, alpha, mask, fg, bg, composite, wl=0.5, epsilon=1e-6):
    """The official function, its gt channels passed separately, everything in [0, 1]."""
    bs = pd.shape[0]
    diff_alpha = (pd - alpha) * mask
    loss_alpha = torch.sqrt(diff_alpha * diff_alpha + epsilon**2)
    loss_alpha = loss_alpha.sum(dim=2).sum(dim=2) / mask.sum(dim=2).sum(dim=2)
    loss_alpha = loss_alpha.sum() / bs
    c_p = pd * fg + (1 - pd) * bg
    diff_color = (c_p - composite) * mask
    loss_composition = torch.sqrt(diff_color * diff_color + epsilon**2)
    loss_composition = loss_composition.sum(dim=2).sum(dim=2) / mask.sum(dim=2).sum(dim=2)
    loss_composition = loss_composition.sum() / bs
    return wl * loss_alpha + (1 - wl) * loss_composition


def test_equals_the_official_weighted_loss() -> None:
    gen = torch.Generator().manual_seed(0)
    b, h, w = 3, 24, 20
    alpha = torch.rand(b, 1, h, w, generator=gen)
    fg, bg = torch.rand(b, 3, h, w, generator=gen), torch.rand(b, 3, h, w, generator=gen)
    composite = alpha * fg + (1 - alpha) * bg
    pred = torch.rand(b, 1, h, w, generator=gen)
    mask = (torch.rand(b, 1, h, w, generator=gen) < 0.3).float()
    trimap = torch.where(mask > 0, 128.0, torch.where(alpha > 0.5, 255.0, 0.0))
    batch = {
        "image": _norm(composite),
        "fg": _norm(fg),
        "bg": _norm(bg),
        "alpha": alpha,
        "trimap": trimap,
    }
    terms = IndexNetLoss()({"alpha_raw": pred}, batch)
    official = _official_weighted_loss(pred, alpha, mask, fg, bg, composite)
    assert terms["loss"].item() == pytest.approx(official.item(), rel=1e-5)
    # The composition term is O(1) in [0, 1] units, not 255x the alpha term's scale.
    assert 0.1 < terms["loss_comp"].item() / terms["loss_alpha"].item() < 10


def test_alpha_term_masks_inside_the_square_root() -> None:
    # One unknown pixel (error 0.5) and 99 known ones with error 0.9: each known pixel adds
    # eps = 1e-6, as the official code does.
    pred = torch.full((1, 1, 10, 10), 0.9)
    pred[0, 0, 0, 0] = 0.5
    unknown = torch.zeros(1, 1, 10, 10)
    unknown[0, 0, 0, 0] = 1
    got = unknown_alpha_loss(pred, torch.zeros_like(pred), unknown)
    assert got.item() == pytest.approx(0.5 + 99e-6, abs=2e-6)


def test_composition_term_in_unit_range() -> None:
    pred = torch.full((1, 1, 1, 1), 0.5)
    fg, bg = torch.ones(1, 3, 1, 1), -torch.ones(1, 3, 1, 1)
    image = torch.full((1, 3, 1, 1), 0.2)
    # Normalised composite 0 vs 0.2 -> 0.2 * std per channel in [0, 1] units, summed over RGB.
    expected = 0.2 * (0.229 + 0.224 + 0.225)
    got = unknown_composition_loss(pred, image, fg, bg, torch.ones(1, 1, 1, 1))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_total_weights_and_empty_region() -> None:
    pred = torch.tensor([[0.5, 0.9], [0.25, 0.75]]).view(2, 1, 1, 2)
    alpha = torch.zeros(2, 1, 1, 2)
    trimap = torch.tensor([[128.0, 0.0], [100.0, 200.0]]).view(2, 1, 1, 2)
    fg, bg = torch.ones(2, 3, 1, 2), -torch.ones(2, 3, 1, 2)
    image = pred * fg + (1 - pred) * bg  # perfect composition: only the eps terms remain
    batch = {"image": image, "alpha": alpha, "trimap": trimap, "fg": fg, "bg": bg}
    terms = IndexNetLoss()({"alpha_raw": pred}, batch)
    # Per sample: 3 channels x 2 pixels x eps / |U| (1 and 2 unknown pixels): (6e-6 + 3e-6) / 2.
    assert terms["loss_comp"].item() == pytest.approx(4.5e-6, abs=1e-7)
    # Sample 0: 0.5 + eps for the known pixel; sample 1: (0.25 + 0.75) / 2.
    assert terms["loss_alpha"].item() == pytest.approx((0.5 + 1e-6 + 0.5) / 2, abs=1e-7)
    assert terms["loss"].item() == pytest.approx(
        0.5 * terms["loss_alpha"].item() + 0.5 * terms["loss_comp"].item()
    )
    empty = torch.zeros(1, 1, 2, 2)
    # No unknown pixel: the 4 eps terms over 1 (not a division by zero).
    assert unknown_alpha_loss(torch.rand(1, 1, 2, 2), empty, empty).item() == pytest.approx(4e-6)


def test_missing_keys_are_named() -> None:
    with pytest.raises(KeyError, match="fg"):
        IndexNetLoss()({"alpha_raw": torch.zeros(1, 1, 2, 2)}, {"alpha": torch.zeros(1, 1, 2, 2)})
