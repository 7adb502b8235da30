"""LF's objective on inputs whose terms can be worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from p3m_lightning.methods.lf.loss import LFLoss, classification_loss, fusion_loss

SIZE = 16
N = SIZE * SIZE


def flat(value: float) -> torch.Tensor:
    return torch.full((1, 1, SIZE, SIZE), value)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_cross_entropy_weighs_soft_pixels_half() -> None:
    solid = classification_loss(flat(0.0), flat(1.0))
    assert solid["ce"].item() == pytest.approx(math.log(2), rel=1e-6)
    assert solid["l1"].item() == 0.0 and solid["grad"].item() == 0.0
    soft = classification_loss(flat(0.0), flat(0.5))
    assert soft["ce"].item() == pytest.approx(0.5 * math.log(2), rel=1e-6)
    unweighted = classification_loss(flat(0.0), flat(0.5), soft_weight=1.0)
    assert unweighted["ce"].item() == pytest.approx(math.log(2), rel=1e-6)


def test_l1_counts_only_the_soft_region() -> None:
    # Probability 0.75 against 0.5: |0.25| on every pixel, averaged with the +1 guard.
    terms = classification_loss(flat(logit(0.75)), flat(0.5))
    assert terms["l1"].item() == pytest.approx(0.25 * N / (N + 1), rel=1e-5)
    assert terms["grad"].item() == pytest.approx(0.0, abs=1e-7)
    half = flat(0.5)
    half[..., : SIZE // 2, :] = 1.0  # top half solid: only the bottom half's error counts
    part = classification_loss(flat(logit(0.75)), half)
    assert part["l1"].item() == pytest.approx(0.25 * (N // 2) / (N // 2 + 1), rel=1e-5)


def test_gradient_term_on_a_ramp() -> None:
    # Target ramps 0.1, 0.3, 0.5, 0.7 along x; a flat 0.5 prediction misses each step by 0.2.
    target = (0.1 + 0.2 * torch.arange(4.0)).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    terms = classification_loss(torch.zeros(1, 1, 4, 4), target)
    assert terms["grad"].item() == pytest.approx(12 * 0.2 / 13, rel=1e-5)
    expected = terms["ce"] + terms["l1"] + terms["grad"]
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_fusion_loss_weighs_solid_pixels_a_tenth() -> None:
    assert fusion_loss(flat(0.7), flat(0.5)).item() == pytest.approx(0.2, rel=1e-5)
    assert fusion_loss(flat(0.2), flat(0.0)).item() == pytest.approx(0.02, rel=1e-5)
    assert fusion_loss(flat(0.2), flat(0.0), solid_weight=1.0).item() == pytest.approx(0.2)


def test_total_is_fusion_plus_half_both_classifications() -> None:
    outputs = {"alpha": flat(0.7), "fg_logits": flat(logit(0.75)), "bg_logits": flat(0.0)}
    batch = {"alpha": flat(0.5)}
    terms = LFLoss()(outputs, batch)
    # The background decoder's target is 1 - alpha = 0.5 too: same terms as a flat 0.5 target.
    assert terms["loss_bg_ce"].item() == pytest.approx(0.5 * math.log(2), rel=1e-6)
    assert terms["loss_fg_l1"].item() == pytest.approx(0.25 * N / (N + 1), rel=1e-5)
    expected = terms["loss_fusion"] + 0.5 * (terms["loss_fg"] + terms["loss_bg"])
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    seg_only = LFLoss(w_fusion=0.0, w_seg=1.0)(outputs, batch)
    expected = terms["loss_fg"] + terms["loss_bg"]
    assert seg_only["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_background_target_is_one_minus_alpha() -> None:
    outputs = {"alpha": flat(0.0), "fg_logits": flat(-20.0), "bg_logits": flat(20.0)}
    terms = LFLoss()(outputs, {"alpha": flat(0.0)})
    assert terms["loss_fg"].item() < 1e-6 and terms["loss_bg"].item() < 1e-6
    assert terms["loss"].item() < 1e-6


def test_rejects_missing_keys() -> None:
    with pytest.raises(KeyError, match="bg_logits"):
        LFLoss()({"alpha": flat(0.5), "fg_logits": flat(0.0)}, {"alpha": flat(0.5)})
