"""Background Matting's supervised objective on inputs whose terms can be worked out by hand.

Every term is in the official [-1, 1] units: a difference of 0.1 in [0, 1] counts 0.2.
"""

from __future__ import annotations

import pytest
import torch

from p3m_lightning.methods.basic.loss import BASICLoss, masked_l1, sobel_loss
from p3m_lightning.normalization import normalize

SIZE = 32


def flat(value: float, channels: int = 1, batch: int = 1) -> torch.Tensor:
    return torch.full((batch, channels, SIZE, SIZE), value)


def batch(alpha: float = 0.5, fg: float = 0.7, n: int = 1) -> dict[str, torch.Tensor]:
    return {
        "image": normalize(flat(0.5, 3, n)),
        "fg": normalize(flat(fg, 3, n)),
        "bg": normalize(flat(0.5, 3, n)),
        "alpha": flat(alpha, 1, n),
    }


def outputs(alpha: float, fg_raw: float, n: int = 1) -> dict[str, torch.Tensor]:
    return {"alpha": flat(alpha, 1, n), "fg_raw": flat(fg_raw, 3, n)}


def test_alpha_l1_in_signed_units() -> None:
    terms = BASICLoss()(outputs(0.7, 0.7), batch(alpha=0.5))
    assert terms["loss_alpha"].item() == pytest.approx(0.4, rel=1e-5)


def test_foreground_l1_sums_channels_over_the_pixels_with_alpha() -> None:
    # |0.6 - 0.7| = 0.1 -> 0.2 signed, x 3 channels, averaged over the masked pixels.
    terms = BASICLoss()(outputs(0.5, 0.6), batch(alpha=0.5, fg=0.7))
    assert terms["loss_fg"].item() == pytest.approx(0.6, rel=1e-5)
    half = batch(alpha=0.5, fg=0.7)
    half["alpha"][..., : SIZE // 2] = 0.0  # outside the mask: ignored, not averaged in
    assert BASICLoss()(outputs(0.5, 0.6), half)["loss_fg"].item() == pytest.approx(0.6, rel=1e-5)
    two = batch(alpha=0.5, fg=0.7, n=2)
    two["alpha"][1] = 0.0  # a sample without foreground adds 0 but still counts in B
    assert BASICLoss()(outputs(0.5, 0.6, n=2), two)["loss_fg"].item() == pytest.approx(
        0.3, rel=1e-5
    )


def test_composition_takes_the_image_where_alpha_is_nearly_one() -> None:
    # 0.5 F' + 0.5 B = 0.5 * 0.7 + 0.5 * 0.5 = 0.6 against 0.5: 0.2 signed x 3 channels.
    terms = BASICLoss()(outputs(0.5, 0.7), batch())
    assert terms["loss_comp"].item() == pytest.approx(0.6, rel=1e-5)
    # Above 0.975 F' is the image itself: 0.99 * 0.5 + 0.01 * 0.5 = 0.5 exactly.
    solid = BASICLoss()(outputs(0.99, 0.7), batch())
    assert solid["loss_comp"].item() == pytest.approx(0.0, abs=1e-5)


def test_gradient_term_sees_only_the_zero_padded_border_of_a_constant_error() -> None:
    # Predicted alpha 0.7 (0.4 signed) vs true 0.5 (0 signed): Sobel x is 4c on the left and
    # right columns and 3c at their corners, so sum |Gx| = 2c(4H - 2); the same for y.
    c = 0.4
    expected = 2 * (2 * c * (4 * SIZE - 2)) / (SIZE * SIZE)
    terms = BASICLoss()(outputs(0.7, 0.7), batch(alpha=0.5))
    assert terms["loss_grad"].item() == pytest.approx(expected, rel=1e-5)
    ramp = torch.linspace(0, 1, SIZE).view(1, 1, 1, SIZE).expand(2, 1, SIZE, SIZE)
    assert sobel_loss(ramp, ramp.clone()).item() == 0.0


def test_total_weights_one_two_one_one() -> None:
    terms = BASICLoss()(outputs(0.7, 0.6), batch(alpha=0.5, fg=0.8))
    expected = terms["loss_alpha"] + 2 * terms["loss_fg"] + terms["loss_comp"] + terms["loss_grad"]
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    only_fg = BASICLoss(w_alpha=0.0, w_fg=1.0, w_comp=0.0, w_grad=0.0)(
        outputs(0.7, 0.6), batch(alpha=0.5, fg=0.8)
    )
    assert only_fg["loss"].item() == pytest.approx(terms["loss_fg"].item(), rel=1e-6)


def test_masked_l1_divides_by_the_pixel_count() -> None:
    pred = torch.zeros(1, 3, 2, 2)
    target = torch.ones(1, 3, 2, 2)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert masked_l1(pred, target, mask).item() == pytest.approx(3.0, rel=1e-5)


def test_missing_keys_are_named() -> None:
    incomplete = batch()
    del incomplete["bg"]
    with pytest.raises(KeyError, match="bg"):
        BASICLoss()(outputs(0.5, 0.5), incomplete)
    with pytest.raises(KeyError, match="fg_raw"):
        BASICLoss()({"alpha": flat(0.5)}, batch())
