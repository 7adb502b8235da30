"""MODNet's objective on inputs whose terms can be worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch

from p3m_lightning.methods.modnet.loss import MODNetLoss, modnet_blur_kernel
from p3m_lightning.normalization import normalize

SIZE = 32


def flat(value: float, channels: int = 1, size: int = SIZE) -> torch.Tensor:
    return torch.full((1, channels, size, size), value)


def batch(alpha: float, trimap: float, rgb: float = 0.75) -> dict[str, torch.Tensor]:
    return {"image": normalize(flat(rgb, 3)), "alpha": flat(alpha), "trimap": flat(trimap)}


def outputs(semantic: float, detail: float, matte: float) -> dict[str, torch.Tensor]:
    return {
        "semantic": flat(semantic, size=SIZE // 16),
        "detail": flat(detail),
        "alpha": flat(matte),
    }


@pytest.mark.parametrize("size", [3, 5])
def test_blur_kernel_equals_scipy_gaussian_filter_of_a_delta(size: int) -> None:
    delta = np.zeros((size, size))
    delta[size // 2, size // 2] = 1.0
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    expected = scipy.ndimage.gaussian_filter(delta, sigma)
    np.testing.assert_allclose(modnet_blur_kernel(size)[0, 0].numpy(), expected, atol=1e-7)


def test_semantic_target_is_alpha_downsampled_then_blurred() -> None:
    alpha = torch.zeros(1, 1, 64, 64)
    alpha[..., :, 32:] = 1.0  # right half foreground
    target = MODNetLoss().semantic_target(alpha, (4, 4))[0, 0]
    # Columns 0, 3 stay 0 / 1; the blur mixes the middle columns with weight 0.25 (the
    # kernel's 1-D taps are 0.25, 0.5, 0.25 up to 1e-3).
    assert target.shape == (4, 4)
    assert torch.allclose(target[:, 0], torch.tensor(0.0), atol=1e-6)
    assert torch.allclose(target[:, 3], torch.tensor(1.0), atol=1e-6)
    assert torch.allclose(target[:, 1], torch.tensor(0.25), atol=1e-3)
    assert torch.allclose(target[:, 2], torch.tensor(0.75), atol=1e-3)


def test_terms_in_the_transition_region() -> None:
    terms = MODNetLoss()(outputs(0.4, 0.7, 0.7), batch(alpha=0.5, trimap=128.0))
    assert terms["loss_semantic"].item() == pytest.approx(0.01, rel=1e-4)  # (0.4 - 0.5)^2
    assert terms["loss_detail"].item() == pytest.approx(0.2, rel=1e-5)
    assert terms["loss_matte_l1"].item() == pytest.approx(0.2 + 4 * 0.2, rel=1e-5)
    # MODNet's input normalisation maps RGB 0.75 to 0.5: |0.5 * 0.2| (1 + 4).
    assert terms["loss_matte_comp"].item() == pytest.approx(0.5, rel=1e-4)
    expected = 10 * 0.01 + 10 * 0.2 + 1.5
    assert terms["loss"].item() == pytest.approx(expected, rel=1e-4)


def test_known_region_silences_detail_and_boundary_terms() -> None:
    terms = MODNetLoss()(outputs(1.0, 0.3, 0.9), batch(alpha=1.0, trimap=255.0))
    assert terms["loss_semantic"].item() == pytest.approx(0.0, abs=1e-10)
    assert terms["loss_detail"].item() == 0.0
    assert terms["loss_matte_l1"].item() == pytest.approx(0.1, rel=1e-5)


def test_missing_keys_are_named() -> None:
    out = outputs(0.5, 0.5, 0.5)
    del out["semantic"]
    with pytest.raises(KeyError, match="outputs.semantic"):
        MODNetLoss()(out, batch(0.5, 128.0))
