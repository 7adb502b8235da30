"""HATTNet: outputs, attention blocks, ResNeXt encoder, training, round trip (tiny widths)."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnext101_32x8d
from torchvision.models.resnet import Bottleneck, ResNet

from p3m_lightning.methods.hatt.loss import HATTLoss, discriminator_loss
from p3m_lightning.methods.hatt.network import (
    AlphaDiscriminator,
    ChannelAttention,
    HATTNet,
    SpatialAttention,
)
from p3m_lightning.normalization import normalize

TINY = {
    "layers": (1, 1, 1, 1),
    "groups": 2,
    "width_per_group": 4,
    "aspp_width": 8,
    "low_width": 8,
    "decoder_width": 8,
}

# Our full-width HATTNet (ResNeXt-101 32x8d encoder without its classifier: 86,742,336),
# counted by instantiating it: the authors released no code and the paper states no count, so
# this pins the layout documented in docs/methods/hatt.md.
FULL_PARAMS = 103_140_675


def tiny(**overrides) -> HATTNet:
    torch.manual_seed(0)
    return HATTNet(**{**TINY, **overrides})


def tiny_batch(size: int = 64) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2).sqrt()
    alpha = (1.0 - (r - size / 4).clamp(0, 4) / 4).view(1, 1, size, size)
    fg = torch.rand(1, 3, size, size, generator=gen) * 0.5 + 0.5
    bg = torch.rand(1, 3, size, size, generator=gen) * 0.5
    return {"image": normalize(alpha * fg + (1 - alpha) * bg), "alpha": alpha}


def test_full_width_encoder_is_torchvision_resnext101_32x8d() -> None:
    model = HATTNet()
    reference = resnext101_32x8d(weights=None).state_dict()
    ours = [(k, tuple(v.shape)) for k, v in model.encoder.state_dict().items()]
    assert ours == [(k, tuple(v.shape)) for k, v in reference.items() if not k.startswith("fc.")]
    assert sum(p.numel() for p in model.encoder.parameters()) == 86_742_336
    assert sum(p.numel() for p in model.parameters()) == FULL_PARAMS


def test_outputs_at_a_small_size() -> None:
    model = tiny().eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 64, 96))
    assert set(out) == {"alpha"}
    assert out["alpha"].shape == (2, 1, 64, 96)
    assert out["alpha"].min() >= 0.0 and out["alpha"].max() <= 1.0


def test_channel_attention_scales_each_channel_by_a_weight_in_0_1() -> None:
    torch.manual_seed(0)
    block = ChannelAttention(8)
    x = torch.rand(2, 8, 5, 7) + 0.1
    ratio = block(x) / x
    # One weight per (sample, channel), constant over the positions.
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-6)
    assert ratio.min() > 0 and ratio.max() < 1


def test_spatial_attention_reaches_k_pixels_in_each_direction() -> None:
    torch.manual_seed(0)
    block = SpatialAttention(4, kernel=7).eval()
    x = torch.zeros(1, 4, 21, 21)
    base = block(x)
    x[..., 10, 10] = 5.0
    changed = (block(x) - base).abs()[0, 0] > 0
    assert changed.shape == (21, 21)
    rows, cols = changed.nonzero(as_tuple=True)
    # Two 7-tap kernels in sequence: a 7x7 footprint around the impulse.
    assert rows.min() == 7 and rows.max() == 13 and cols.min() == 7 and cols.max() == 13


def test_rejects_bad_sizes_and_layers() -> None:
    with pytest.raises(ValueError, match="divisible by 16"):
        tiny()(torch.zeros(1, 3, 64, 72))
    with pytest.raises(ValueError, match="layers"):
        HATTNet(layers=(1, 1, 1))


def test_adam_steps_lower_the_loss(adam_losses) -> None:
    losses = adam_losses(tiny().train(), HATTLoss(), tiny_batch(), steps=5)
    assert losses[-1] < 0.9 * losses[0]


def test_adversarial_alternation_runs_on_both_optimisers() -> None:
    model = tiny().train()
    torch.manual_seed(1)
    critic = AlphaDiscriminator(width=8).train()
    loss_fn = HATTLoss(critic, w_adv=0.05)
    batch = tiny_batch()
    opt_g = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(critic.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in critic.parameters()]
    outputs = model(batch["image"])
    opt_g.zero_grad()
    loss_fn(outputs, batch)["loss"].backward()
    opt_g.step()
    # The generator step leaves the critic as it was; its own step moves it.
    assert all(torch.equal(a, b) for a, b in zip(before, critic.parameters(), strict=True))
    opt_d.zero_grad()
    discriminator_loss(critic, outputs, batch).backward()
    opt_d.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, critic.parameters(), strict=True))


def test_state_dict_round_trip(tmp_path) -> None:
    model = tiny().eval()
    path = tmp_path / "hatt.pth"
    torch.save(model.state_dict(), path)
    rebuilt = HATTNet(**model.arch_config()).eval()
    rebuilt.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x)["alpha"], rebuilt(x)["alpha"])


def test_imagenet_weights_load_from_a_local_torchvision_file(tmp_path) -> None:
    torch.manual_seed(1)
    source = ResNet(Bottleneck, list(TINY["layers"]), groups=2, width_per_group=4)
    path = tmp_path / "resnext.pth"
    torch.save(source.state_dict(), path)  # with its classifier, as torchvision ships it
    model = tiny(pretrained_path=str(path))
    assert torch.equal(model.encoder.conv1.weight, source.conv1.weight)
    assert torch.equal(model.encoder.layer3[0].conv2.weight, source.layer3[0].conv2.weight)
