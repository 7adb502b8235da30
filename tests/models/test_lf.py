"""LFNet: outputs, fusion formula, DenseNet-201 encoder, training, round trip (tiny widths)."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import DenseNet, densenet201

from p3m_lightning.methods.lf.loss import LFLoss
from p3m_lightning.methods.lf.network import LFNet, late_fusion
from p3m_lightning.normalization import normalize

TINY = {
    "growth_rate": 4,
    "block_config": (1, 1, 1, 1),
    "num_init_features": 8,
    "decoder_widths": (8, 8, 8, 8, 8),
    "fusion_width": 8,
}

# Our full-width LFNet, counted by instantiating it: the paper states no parameter count and
# the authors' code is not public, so this pins the layout documented in docs/methods/lf.md.
FULL_PARAMS = 39_371_715


def tiny(**overrides) -> LFNet:
    torch.manual_seed(0)
    return LFNet(**{**TINY, **overrides})


def tiny_batch(size: int = 64) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2).sqrt()
    alpha = (1.0 - (r - size / 4).clamp(0, 4) / 4).view(1, 1, size, size)
    fg = torch.rand(1, 3, size, size, generator=gen) * 0.5 + 0.5
    bg = torch.rand(1, 3, size, size, generator=gen) * 0.5
    return {"image": normalize(alpha * fg + (1 - alpha) * bg), "alpha": alpha}


def test_full_width_encoder_is_torchvision_densenet201() -> None:
    model = LFNet()
    reference = densenet201(weights=None).features
    ours = [(k, tuple(v.shape)) for k, v in model.encoder.state_dict().items()]
    assert ours == [(k, tuple(v.shape)) for k, v in reference.state_dict().items()]
    assert sum(p.numel() for p in model.encoder.parameters()) == 18_092_928
    assert sum(p.numel() for p in model.parameters()) == FULL_PARAMS


def test_outputs_at_a_small_size() -> None:
    model = tiny().eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 64, 96))
    assert set(out) == {"alpha", "fg_logits", "bg_logits", "beta"}
    for value in out.values():
        assert value.shape == (2, 1, 64, 96)
    for key in ("alpha", "beta"):
        assert out[key].min() >= 0.0 and out[key].max() <= 1.0


def test_alpha_is_the_late_fusion_of_both_decoders() -> None:
    out = tiny().eval()(torch.randn(1, 3, 64, 64))
    fg, bg = torch.sigmoid(out["fg_logits"]), torch.sigmoid(out["bg_logits"])
    assert torch.allclose(out["alpha"], out["beta"] * fg + (1 - out["beta"]) * (1 - bg))
    # beta = 1 takes F, beta = 0 takes 1 - B.
    f, b = torch.tensor([0.9]), torch.tensor([0.3])
    assert late_fusion(torch.tensor([1.0]), f, b).item() == pytest.approx(0.9)
    assert late_fusion(torch.tensor([0.0]), f, b).item() == pytest.approx(0.7)
    assert late_fusion(torch.tensor([0.5]), f, b).item() == pytest.approx(0.8)


def test_rejects_sizes_not_divisible_by_32() -> None:
    with pytest.raises(ValueError, match="divisible by 32"):
        tiny()(torch.zeros(1, 3, 64, 80))
    with pytest.raises(ValueError, match="decoder_widths"):
        LFNet(decoder_widths=(8, 8))


def test_adam_steps_lower_the_loss(adam_losses) -> None:
    losses = adam_losses(tiny().train(), LFLoss(), tiny_batch(), steps=5)
    assert losses[-1] < 0.9 * losses[0]


def test_state_dict_round_trip(tmp_path) -> None:
    model = tiny().eval()
    path = tmp_path / "lf.pth"
    torch.save(model.state_dict(), path)
    rebuilt = LFNet(**model.arch_config()).eval()
    rebuilt.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        a, b = model(x), rebuilt(x)
    for key in a:
        assert torch.equal(a[key], b[key])


def test_imagenet_weights_load_from_a_local_torchvision_file(tmp_path) -> None:
    # torchvision's released DenseNet files spell ``norm.1`` for ``norm1``; both must load.
    torch.manual_seed(1)
    source = DenseNet(TINY["growth_rate"], TINY["block_config"], TINY["num_init_features"])
    state = {
        k.replace("norm1", "norm.1").replace("conv2", "conv.2"): v
        for k, v in source.state_dict().items()
    }
    assert any("norm.1" in k for k in state)
    path = tmp_path / "densenet.pth"
    torch.save(state, path)
    model = tiny(pretrained_path=str(path))
    assert torch.equal(model.encoder.conv0.weight, source.features.conv0.weight)
    layer = model.encoder.denseblock2.denselayer1
    assert torch.equal(layer.norm1.weight, source.features.denseblock2.denselayer1.norm1.weight)
