"""Inference strategies on stub networks whose outputs are known exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from p3m_lightning.inference import resize
from p3m_lightning.methods.fba.inference import FBAResize
from p3m_lightning.methods.gca.inference import GCAPad
from p3m_lightning.methods.indexnet.inference import IndexNetResize
from p3m_lightning.methods.p3m_net.inference import hybrid_alpha
from p3m_lightning.methods.p3m_net.network import P3MNet
from p3m_lightning.strategies import (
    STRATEGIES,
    Resize,
    TrimapGuided,
    build_strategy,
)


class MeanNet(nn.Module):
    """alpha = sigmoid(mean of the image channels); records the sizes it was called at."""

    inputs = ("image",)
    input_divisor = 32

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[int, int]] = []

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        self.sizes.append(tuple(image.shape[-2:]))
        return {"alpha": torch.sigmoid(image.mean(dim=1, keepdim=True))}


class TrimapEcho(nn.Module):
    """A trimap-based stub: alpha = 0.5 everywhere; records its inputs."""

    inputs = ("image", "trimap")
    input_divisor = 8

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[torch.Size, torch.Size]] = []

    def forward(self, image: torch.Tensor, trimap: torch.Tensor) -> dict[str, torch.Tensor]:
        self.seen.append((image.shape, trimap.shape))
        return {"alpha": torch.full_like(trimap, 0.5), "trimap_seen": trimap}


class RawEcho(TrimapEcho):
    """``TrimapEcho`` with IndexNet's ``alpha_raw`` and FBA's ``from_encodings`` (alpha 0.5,
    recording the encoded inputs' sizes)."""

    def forward(self, image: torch.Tensor, trimap: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().forward(image, trimap)
        return {**out, "alpha_raw": out["alpha"]}

    def from_encodings(
        self, image: torch.Tensor, rgb: torch.Tensor, two: torch.Tensor, clicks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.seen.append((image.shape, two.shape, clicks.shape))
        return torch.full_like(rgb[:, :1], 0.5), rgb, rgb


def test_resize_runs_at_half_size_rounded_to_the_divisor() -> None:
    net = MeanNet()
    image = torch.randn(1, 3, 150, 230)
    alpha = Resize(scale=0.5)(net, {"image": image})
    assert net.sizes == [(64, 96)]  # 75 -> 64, 115 -> 96
    assert alpha.shape == (150, 230) and alpha.dtype == torch.float32
    assert float(alpha.min()) >= 0.0 and float(alpha.max()) <= 1.0
    net.sizes.clear()
    Resize(scale=1.0, max_side=100)(net, {"image": image})
    assert net.sizes == [(96, 96)]  # capped at 100, rounded down to 96


def test_fast_resize_is_one_half_size_pass_resized_back_for_p3m_net() -> None:
    """``resampling=torch``: torch's antialiased bilinear both ways (the official resampling
    is pinned against the official script in tests/test_official_procedures_trimap_free.py)."""
    torch.manual_seed(0)
    net = P3MNet().eval()
    image = torch.randn(1, 3, 96, 128)
    with torch.inference_mode():
        fusion = net(resize(image, (32, 64)))["fusion"]  # 48 x 64 rounded down to 32
        expected = resize(fusion, (96, 128))[0, 0].clamp(0.0, 1.0)
        got = build_strategy({"name": "resize", "resampling": "torch"})(net, {"image": image})
        hybrid = build_strategy({"name": "hybrid", "resampling": "torch"})(net, {"image": image})
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        fast = hybrid_alpha(net, image, resampling="torch")
        torch.testing.assert_close(hybrid, fast, rtol=0, atol=0)


def test_trimap_guided_pads_crops_and_imposes_known_regions() -> None:
    net = TrimapEcho()
    image = torch.randn(1, 3, 37, 45)
    trimap = torch.full((1, 1, 37, 45), 128.0)
    trimap[..., :5, :] = 0.0
    trimap[..., -5:, :] = 255.0
    alpha = TrimapGuided()(net, {"image": image, "trimap": trimap})
    # Padded to multiples of 8 on the bottom and right, cropped back.
    assert net.seen == [(torch.Size([1, 3, 40, 48]), torch.Size([1, 1, 40, 48]))]
    assert alpha.shape == (37, 45)
    assert (alpha[:5] == 0).all() and (alpha[-5:] == 1).all()
    assert (alpha[5:-5] == 0.5).all()


def test_trimap_guided_caps_large_images_and_keeps_trimap_levels() -> None:
    net = TrimapEcho()
    image = torch.randn(1, 3, 100, 60)
    trimap = torch.zeros(1, 1, 100, 60)
    trimap[..., 40:60, :] = 128.0
    trimap[..., 60:, :] = 255.0
    alpha = TrimapGuided(max_side=50)(net, {"image": image, "trimap": trimap})
    assert net.seen[0][0][-2:] == (56, 32)  # 50x30, padded to multiples of 8
    assert alpha.shape == (100, 60)
    assert (alpha[:40] == 0).all() and (alpha[60:] == 1).all()


def test_missing_input_and_unknown_name_are_named() -> None:
    with pytest.raises(ValueError, match="missing: trimap"):
        TrimapGuided()(TrimapEcho(), {"image": torch.zeros(1, 3, 8, 8)})
    with pytest.raises(ValueError, match="unknown strategy 'fast'; choose one of resize"):
        build_strategy("fast")
    assert set(STRATEGIES) == {
        "resize",
        "hybrid",
        "gfm_hybrid",
        "modnet",
        "trimap_guided",
        "basic",
        "gca",
        "indexnet",
        "fba",
    }


def test_trimap_guided_resize_alignment_runs_at_the_next_multiple() -> None:
    net = TrimapEcho()
    image = torch.randn(1, 3, 37, 45)
    trimap = torch.full((1, 1, 37, 45), 128.0)
    trimap[..., :5, :] = 0.0
    alpha = TrimapGuided(align="resize")(net, {"image": image, "trimap": trimap})
    assert net.seen == [(torch.Size([1, 3, 40, 48]), torch.Size([1, 1, 40, 48]))]
    assert alpha.shape == (37, 45) and (alpha[:5] == 0).all()
    torch.testing.assert_close(alpha[5:], torch.full((32, 45), 0.5))


def test_a_strategy_with_parameters_is_recorded_and_rebuilt_with_them() -> None:
    assert Resize().spec() == "resize"  # defaults: the name alone
    spec = Resize(scale=1.0).spec()
    assert spec == {"name": "resize", "scale": 1.0}
    rebuilt = build_strategy(spec, max_side=800)
    assert isinstance(rebuilt, Resize) and rebuilt.scale == 1.0 and rebuilt.max_side == 800
    aligned = build_strategy({"name": "trimap_guided", "align": "resize"})
    assert aligned.align == "resize"
    known = r"known: \['align', 'quantize'\]"
    with pytest.raises(ValueError, match=r"unknown parameters \['scale'\]; " + known):
        build_strategy({"name": "trimap_guided", "scale": 2})


def test_quantisation_is_recorded_and_rebuilt() -> None:
    # Only the parameters that differ from the defaults are recorded.
    assert TrimapGuided(quantize="round").spec() == {"name": "trimap_guided", "quantize": "round"}
    for cls, default in ((IndexNetResize, "floor"), (GCAPad, "floor"), (FBAResize, "round")):
        assert cls().spec() == cls.name and cls().quantize == default
        spec = cls(quantize=None).spec()
        assert spec == {"name": cls.name, "quantize": None}
        assert build_strategy(spec).quantize is None
    with pytest.raises(ValueError, match=r"quantize must be one of \(None, 'floor', 'round'\)"):
        build_strategy({"name": "gca", "quantize": "trunc"})


def test_indexnet_and_fba_resize_to_the_multiple_and_cap_large_images() -> None:
    image = torch.randn(1, 3, 100, 60)
    trimap = torch.zeros(1, 1, 100, 60)
    trimap[..., 40:60, :] = 128.0
    trimap[..., 60:, :] = 255.0
    for strategy, seen in (
        (IndexNetResize(), (torch.Size([1, 3, 104, 64]), torch.Size([1, 1, 104, 64]))),
        (IndexNetResize(max_side=50), (torch.Size([1, 3, 56, 32]), torch.Size([1, 1, 56, 32]))),
        (
            FBAResize(),
            (torch.Size([1, 3, 104, 64]), torch.Size([1, 2, 104, 64]), torch.Size([1, 6, 104, 64])),
        ),
        (
            FBAResize(max_side=50),
            (torch.Size([1, 3, 56, 32]), torch.Size([1, 2, 56, 32]), torch.Size([1, 6, 56, 32])),
        ),
    ):
        net = RawEcho()
        alpha = strategy(net, {"image": image, "trimap": trimap})
        assert net.seen == [seen], strategy
        assert alpha.shape == (100, 60)
        assert (alpha[:40] == 0).all() and (alpha[60:] == 1).all()
        assert (alpha[40:60] * 255 - 127.5).abs().max() <= 0.5 + 1e-4  # 0.5, quantised
