"""GFM's objective on inputs whose terms can be worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from p3m_lightning.methods.gfm.loss import GFMLoss
from p3m_lightning.normalization import normalize

SIZE = 32


def flat(value: float, channels: int = 1) -> torch.Tensor:
    return torch.full((1, channels, SIZE, SIZE), value)


def batch(alpha: float = 0.5, trimap: float = 128.0) -> dict[str, torch.Tensor]:
    return {
        "image": normalize(flat(0.5, 3)),
        "fg": normalize(flat(0.7, 3)),
        "bg": normalize(flat(0.5, 3)),
        "alpha": flat(alpha),
        "trimap": flat(trimap),
    }


def outputs(focus: float, fusion: float, glance_class: int = 1) -> dict[str, torch.Tensor]:
    logits = torch.full((1, 3, SIZE, SIZE), -30.0)
    logits[:, glance_class] = 30.0
    return {"glance_logits": logits, "focus": flat(focus), "alpha": flat(fusion)}


def test_glance_cross_entropy_is_taken_on_the_sigmoid() -> None:
    # sigmoid -> (0, 1, 0) exactly; softmax of that gives e / (e + 2) to the right class.
    terms = GFMLoss()(outputs(0.5, 0.5, glance_class=1), batch())
    assert terms["loss_glance"].item() == pytest.approx(math.log(1 + 2 / math.e), abs=1e-6)
    wrong = GFMLoss()(outputs(0.5, 0.5, glance_class=2), batch())
    assert wrong["loss_glance"].item() == pytest.approx(math.log(math.e + 2), abs=1e-6)


def test_focus_terms_cover_only_the_transition() -> None:
    n = SIZE * SIZE
    terms = GFMLoss()(outputs(0.7, 0.5), batch(alpha=0.5, trimap=128.0))
    assert terms["loss_focus_alpha"].item() == pytest.approx(0.2 * n / (n + 1), rel=1e-5)
    # A constant error has no band-pass content: only the last low-pass level, 0.2, remains.
    assert terms["loss_focus_lap"].item() == pytest.approx(0.2, rel=1e-5)
    known = GFMLoss()(outputs(0.7, 0.5), batch(alpha=1.0, trimap=255.0))
    assert known["loss_focus"].item() == 0.0


def test_fusion_and_composition_in_unit_rgb() -> None:
    terms = GFMLoss()(outputs(0.5, 1.0), batch(alpha=0.5))
    assert terms["loss_fusion_alpha"].item() == pytest.approx(0.5, rel=1e-5)
    assert terms["loss_fusion_lap"].item() == pytest.approx(0.5, rel=1e-5)
    # alpha 1 composites F (0.7) against the image (0.5): |0.2| x 3 channels per pixel.
    assert terms["loss_comp"].item() == pytest.approx(0.6, rel=1e-4)
    perfect = GFMLoss()(outputs(0.5, 0.0), batch(alpha=0.0))
    assert perfect["loss_comp"].item() == pytest.approx(0.0, abs=1e-5)


def test_total_weights_each_term_a_quarter() -> None:
    terms = GFMLoss()(outputs(0.7, 1.0), batch())
    parts = ("loss_glance", "loss_focus", "loss_fusion", "loss_comp")
    expected = 0.25 * sum(terms[k] for k in parts)
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    custom = GFMLoss(w_glance=1.0, w_focus=0.0, w_fusion=0.0, w_comp=0.0)(
        outputs(0.7, 1.0), batch()
    )
    assert custom["loss"].item() == pytest.approx(terms["loss_glance"].item(), rel=1e-6)


def test_rejects_two_class_glance_and_missing_keys() -> None:
    out = outputs(0.5, 0.5)
    out["glance_logits"] = out["glance_logits"][:, :2]
    with pytest.raises(ValueError, match="TT"):
        GFMLoss()(out, batch())
    incomplete = batch()
    del incomplete["fg"]
    with pytest.raises(KeyError, match="fg"):
        GFMLoss()(outputs(0.5, 0.5), incomplete)
