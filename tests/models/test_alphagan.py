"""Tests of the AlphaGAN generator and discriminator: contract, sizes, adversarial training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from p3m_lightning.methods.alphagan.loss import AlphaGANLoss, discriminator_loss
from p3m_lightning.methods.alphagan.network import AlphaGANGenerator
from p3m_lightning.models.layers import PatchDiscriminator

SMALL = {"width": 8, "aspp_width": 16}
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _batch(size: int = 64, batch: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    trimap = torch.full((batch, 1, size, size), 128.0)
    trimap[..., : size // 4, :] = 0.0
    trimap[..., 3 * size // 4 :, :] = 255.0
    alpha = (trimap / 255.0).clone()
    alpha[..., size // 4 : 3 * size // 4, :] = torch.linspace(0, 1, size)
    fg, bg = torch.rand(2, batch, 3, size, size, generator=g).unbind(0)
    image = alpha * fg + (1 - alpha) * bg
    norm = {k: (v - MEAN) / STD for k, v in (("image", image), ("fg", fg), ("bg", bg))}
    return {**norm, "trimap": trimap, "alpha": alpha}


def test_generator_outputs_and_known_regions() -> None:
    torch.manual_seed(0)
    b = _batch()
    with torch.no_grad():
        out = AlphaGANGenerator(**SMALL).eval()(b["image"], b["trimap"])
    assert set(out) == {"alpha", "alpha_pred"}
    for t in out.values():
        assert t.shape == (2, 1, 64, 64) and t.min() >= 0 and t.max() <= 1
    assert (out["alpha"][..., :16, :] == 0).all() and (out["alpha"][..., 48:, :] == 1).all()
    with pytest.raises(ValueError, match="multiple of 16"):
        AlphaGANGenerator(**SMALL)(torch.zeros(1, 3, 40, 64), torch.zeros(1, 1, 40, 64))


def test_full_size_parameter_counts() -> None:
    gen = AlphaGANGenerator()
    # torchvision ResNet-50 without fc: 23,508,032, + 64 * 7 * 7 for the trimap input channel.
    assert sum(p.numel() for p in gen.encoder.parameters()) == 23_508_032 + 3_136
    assert AlphaGANGenerator(**gen.arch_config()).arch_config() == {"width": 64, "aspp_width": 256}
    disc = PatchDiscriminator()
    # pix2pix n_layers=3 PatchGAN, by layer: 4-ch 4x4 conv 64 (+bias), 128, 256, 512 (no bias,
    # BN), 1-ch output conv (+bias).
    expected = (4 * 16 * 64 + 64) + (64 * 16 * 128 + 256) + (128 * 16 * 256 + 512)
    expected += (256 * 16 * 512 + 1024) + (512 * 16 + 1)
    assert sum(p.numel() for p in disc.parameters()) == expected
    assert disc(torch.zeros(1, 3, 64, 64), torch.zeros(1, 1, 64, 64)).shape == (1, 1, 6, 6)


def test_alternating_adam_steps_lower_generator_loss() -> None:
    torch.manual_seed(0)
    gen, disc = AlphaGANGenerator(**SMALL).train(), PatchDiscriminator(width=8).train()
    g_loss = AlphaGANLoss(disc, w_adv=0.01)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-4)
    b = _batch()
    recon = []
    for _ in range(6):
        out = gen(b["image"], b["trimap"])
        opt_g.zero_grad()
        terms = g_loss(out, b)
        terms["loss"].backward()
        opt_g.step()
        opt_d.zero_grad()
        d = discriminator_loss(disc, out, b)
        d.backward()
        opt_d.step()
        recon.append((terms["loss_alpha"] + terms["loss_comp"]).item())
        assert torch.isfinite(d)
    assert recon[-1] < recon[0]


def test_state_dict_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    gen = AlphaGANGenerator(**SMALL).eval()
    path = tmp_path / "alphagan.pt"
    torch.save(gen.state_dict(), path)
    other = AlphaGANGenerator(**SMALL)
    other.load_state_dict(torch.load(path, weights_only=True))
    other.eval()
    b = _batch()
    with torch.no_grad():
        assert torch.equal(
            gen(b["image"], b["trimap"])["alpha"], other(b["image"], b["trimap"])["alpha"]
        )
    assert AlphaGANLoss(PatchDiscriminator(width=8)).state_dict() == {}
