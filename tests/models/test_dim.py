"""Tests of DIMNet: contract, mmagic layout, parameter count, training and round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from p3m_lightning.methods.dim.loss import DIMLoss
from p3m_lightning.methods.dim.network import DIMNet

SMALL = {"width": 8, "refiner_channels": 8}
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _batch(size: int = 64, batch: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    trimap = torch.full((batch, 1, size, size), 128.0)
    trimap[..., : size // 4, :] = 0.0
    trimap[..., 3 * size // 4 :, :] = 255.0
    alpha = (trimap / 255.0).clone()
    # A horizontal ramp in the unknown band: learnable from the image within a few steps.
    alpha[..., size // 4 : 3 * size // 4, :] = torch.linspace(0, 1, size)
    fg, bg = torch.rand(2, batch, 3, size, size, generator=g).unbind(0)
    image = alpha * fg + (1 - alpha) * bg
    norm = {k: (v - MEAN) / STD for k, v in (("image", image), ("fg", fg), ("bg", bg))}
    return {**norm, "trimap": trimap, "alpha": alpha}


def test_outputs_shapes_ranges_and_known_regions() -> None:
    torch.manual_seed(0)
    b = _batch()
    with torch.no_grad():
        out = DIMNet(**SMALL).eval()(b["image"], b["trimap"])
        plain = DIMNet(**SMALL, refine=False).eval()(b["image"], b["trimap"])
    assert set(out) == {"alpha", "alpha_pred", "alpha_refined"}
    assert set(plain) == {"alpha", "alpha_pred"}
    for t in out.values():
        assert t.shape == (2, 1, 64, 64) and t.min() >= 0 and t.max() <= 1
    assert (out["alpha"][..., :16, :] == 0).all() and (out["alpha"][..., 48:, :] == 1).all()
    assert torch.equal(out["alpha"][..., 16:48, :], out["alpha_refined"][..., 16:48, :])


def test_rejects_size_not_multiple_of_32() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        DIMNet(**SMALL)(torch.zeros(1, 3, 48, 64), torch.zeros(1, 1, 48, 64))


def test_full_width_names_and_param_count() -> None:
    net = DIMNet()
    names = list(net.state_dict())
    assert names[:2] == ["backbone.encoder.layer1.0.weight", "backbone.encoder.layer1.0.bias"]
    assert "backbone.decoder.deconv6_1.weight" in names and names[-1] == "refiner.refine_pred.bias"
    # VGG-16's 13 convs (14,714,688 parameters) + 576 for the trimap channel + conv6 (262,656),
    # the decoder (11,222,081) and the refiner (76,801).
    assert sum(p.numel() for p in net.backbone.encoder.parameters()) == 14_714_688 + 576 + 262_656
    assert sum(p.numel() for p in net.backbone.decoder.parameters()) == 11_222_081
    assert sum(p.numel() for p in net.parameters()) == 26_276_802
    assert DIMNet(**net.arch_config()).arch_config() == {
        "width": 64,
        "refine": True,
        "refiner_channels": 64,
    }


def test_adam_steps_lower_the_loss(adam_losses) -> None:
    torch.manual_seed(0)
    net = DIMNet(**SMALL).train()
    loss_fn = DIMLoss()
    b = _batch()
    losses = adam_losses(net, loss_fn, b, steps=8)
    # VGG without normalisation learns slowly from Xavier init; the decrease is small but steady.
    assert all(later < earlier for earlier, later in zip(losses, losses[1:], strict=False))
    assert losses[-1] < losses[0] - 1e-3


def test_state_dict_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = DIMNet(**SMALL).eval()
    path = tmp_path / "dim.pt"
    torch.save(net.state_dict(), path)
    other = DIMNet(**net.arch_config())
    other.load_state_dict(torch.load(path, weights_only=True))
    other.eval()
    b = _batch()
    with torch.no_grad():
        assert torch.equal(
            net(b["image"], b["trimap"])["alpha"], other(b["image"], b["trimap"])["alpha"]
        )
