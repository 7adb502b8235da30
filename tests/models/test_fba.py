"""Tests of FBANet: input encoding, fusion, official layout, training and round trip."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from p3m_lightning.methods.fba.blocks import (
    WSConv2d,
    distance_to_region,
    trimap_distance_features,
    two_channel_trimap,
)
from p3m_lightning.methods.fba.loss import FBALoss
from p3m_lightning.methods.fba.network import FBANet, fba_fusion

DATA = Path(__file__).resolve().parents[1] / "data"
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def net() -> FBANet:
    torch.manual_seed(0)
    return FBANet().eval()


def _batch(size: int = 32, batch: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    trimap = torch.full((batch, 1, size, size), 128.0)
    trimap[..., : size // 4, :] = 0.0
    trimap[..., 3 * size // 4 :, :] = 255.0
    alpha = (trimap / 255.0).clone()
    alpha[..., size // 4 : 3 * size // 4, :] = torch.rand(batch, 1, size // 2, size, generator=g)
    fg = torch.rand(batch, 3, size, size, generator=g)
    bg = torch.rand(batch, 3, size, size, generator=g)
    image = alpha * fg + (1 - alpha) * bg
    norm = {k: (v - MEAN) / STD for k, v in (("image", image), ("fg", fg), ("bg", bg))}
    return {**norm, "trimap": trimap, "alpha": alpha}


def test_distance_matches_opencv() -> None:
    rng = np.random.default_rng(0)
    region = rng.random((2, 23, 31)) > 0.97
    ours = distance_to_region(torch.from_numpy(region), chunk=7).numpy()
    for b in range(2):
        # OpenCV measures the distance of non-zero pixels to the nearest zero pixel.
        ref = cv2.distanceTransform((~region[b]).astype(np.uint8) * 255, cv2.DIST_L2, 0)
        np.testing.assert_allclose(ours[b], ref, atol=1e-4)


def test_trimap_encodings() -> None:
    trimap = torch.full((1, 1, 8, 8), 128.0)
    trimap[..., 0, :] = 0.0
    two = two_channel_trimap(trimap)
    assert two[0, 0, 0].tolist() == [1.0] * 8 and two[0, 1].sum() == 0
    clicks = trimap_distance_features(trimap)
    assert clicks.shape == (1, 6, 8, 8)
    # Background channels: 1 on row 0, exp(-d^2 / (2 sigma^2)) at distance d = 3 below it.
    assert torch.all(clicks[0, :3, 0] == 1)
    assert clicks[0, 0, 3, 0].item() == pytest.approx(np.exp(-9 / (2 * 6.4**2)), rel=1e-5)
    # No foreground pixel: the foreground channels are 0, as the official encoding gives.
    assert clicks[0, 3:].abs().max() == 0


def test_fusion_keeps_opaque_and_transparent_pixels() -> None:
    image, fg, bg = torch.rand(3, 1, 3, 2, 2).unbind(0)
    alpha, f, b = fba_fusion(torch.ones(1, 1, 2, 2), image, fg, bg)
    assert torch.allclose(alpha, torch.ones_like(alpha)) and torch.allclose(f, image)
    assert torch.allclose(b, bg)
    alpha, f, b = fba_fusion(torch.zeros(1, 1, 2, 2), image, fg, bg)
    assert torch.allclose(alpha, torch.zeros_like(alpha)) and torch.allclose(b, image)


def test_weight_standardisation() -> None:
    conv = WSConv2d(2, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 3.0]).view(1, 2, 1, 1))
    # mean 2, biased variance 1: (w - 2) / sqrt(1 + 1e-5)
    expected = torch.tensor([-1.0, 1.0]) / (1 + 1e-5) ** 0.5
    assert torch.allclose(conv.standardised_weight().flatten(), expected, atol=1e-7)


def test_outputs_shapes_ranges_and_known_regions(net: FBANet) -> None:
    b = _batch()
    with torch.no_grad():
        out = net(b["image"], b["trimap"])
    assert set(out) == {"alpha", "fg", "bg", "alpha_raw", "fg_raw", "bg_raw"}
    for key, channels in (("alpha", 1), ("fg", 3), ("bg", 3)):
        for name in (key, f"{key}_raw"):
            assert out[name].shape == (1, channels, 32, 32)
            assert out[name].min() >= 0 and out[name].max() <= 1
    assert (out["alpha"][..., :8, :] == 0).all() and (out["alpha"][..., 24:, :] == 1).all()
    rgb = b["image"] * STD + MEAN
    assert torch.allclose(out["fg"][..., 24:, :], rgb[..., 24:, :], atol=1e-6)
    assert torch.allclose(out["bg"][..., :8, :], rgb[..., :8, :], atol=1e-6)


def test_loss_outputs_are_the_decoder_maps_before_the_fusion(net: FBANet) -> None:
    """The loss supervises clamp / sigmoid of the decoder's 7 channels (issue #38), and the
    fusion of exactly those maps gives the returned alpha."""
    b = _batch()
    decoded = []
    hook = net.decoder.register_forward_hook(lambda m, i, o: decoded.append(o))
    with torch.no_grad():
        out = net(b["image"], b["trimap"])
    hook.remove()
    (raw,) = decoded
    assert torch.equal(out["alpha_raw"], raw[:, :1].clamp(0, 1))
    assert torch.equal(out["fg_raw"], torch.sigmoid(raw[:, 1:4]))
    assert torch.equal(out["bg_raw"], torch.sigmoid(raw[:, 4:7]))
    fused, _, _ = fba_fusion(
        out["alpha_raw"], b["image"] * STD + MEAN, out["fg_raw"], out["bg_raw"]
    )
    unknown = b["trimap"] == 128
    assert torch.equal(out["alpha"][unknown], fused[unknown])
    # The fusion moves alpha: pre- and post-fusion maps are not the same tensor.
    assert (fused - out["alpha_raw"]).abs().max() > 1e-3


def test_rejects_size_not_multiple_of_8(net: FBANet) -> None:
    with pytest.raises(ValueError, match="divisible by 8"):
        net(torch.zeros(1, 3, 36, 32), torch.zeros(1, 1, 36, 32))


def test_matches_official_manifest_and_param_count(net: FBANet) -> None:
    manifest = json.loads((DATA / "fba_manifest.json").read_text())
    assert [[k, list(v.shape)] for k, v in net.state_dict().items()] == manifest["keys"]
    # Official build_model('default'): 34,693,031 parameters.
    assert sum(p.numel() for p in net.parameters()) == 34_693_031
    assert net.arch_config() == {}


def test_state_dict_round_trip(net: FBANet, tmp_path: Path) -> None:
    path = tmp_path / "fba.pt"
    torch.save(net.state_dict(), path)
    other = FBANet()
    other.load_state_dict(torch.load(path, weights_only=True))
    other.eval()
    b = _batch()
    with torch.no_grad():
        assert torch.equal(
            net(b["image"], b["trimap"])["alpha"], other(b["image"], b["trimap"])["alpha"]
        )


@pytest.mark.slow
def test_adam_steps_lower_the_loss(adam_losses) -> None:
    torch.manual_seed(0)
    model = FBANet().train()
    loss_fn = FBALoss()
    b = _batch()
    losses = adam_losses(model, loss_fn, b, steps=4, lr=1e-4)
    # From scratch most fused alphas sit on the [0, 1] clip (no gradient, as officially), so
    # the F/B terms drive the first steps: a small but steady decrease.
    assert all(later < earlier for earlier, later in zip(losses, losses[1:], strict=False))
    assert losses[-1] < losses[0] - 0.01
