"""Tests of IndexNet: contract, official layout, index blocks, training and round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from p3m_lightning.methods.indexnet.blocks import IndexBlock
from p3m_lightning.methods.indexnet.loss import IndexNetLoss
from p3m_lightning.methods.indexnet.network import IndexNet

DATA = Path(__file__).resolve().parents[1] / "data"


def _batch(size: int = 32, batch: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    trimap = torch.full((batch, 1, size, size), 128.0)
    trimap[..., : size // 4, :] = 0.0
    trimap[..., 3 * size // 4 :, :] = 255.0
    alpha = (trimap / 255.0).clone()
    alpha[..., size // 4 : 3 * size // 4, :] = torch.rand(batch, 1, size // 2, size, generator=g)
    fg = torch.randn(batch, 3, size, size, generator=g)
    bg = torch.randn(batch, 3, size, size, generator=g)
    image = alpha * fg + (1 - alpha) * bg
    return {"image": image, "trimap": trimap, "alpha": alpha, "fg": fg, "bg": bg}


def test_outputs_shapes_ranges_and_known_regions() -> None:
    torch.manual_seed(0)
    net = IndexNet().eval()
    b = _batch()
    with torch.no_grad():
        out = net(b["image"], b["trimap"])
    assert set(out) == {"alpha", "alpha_raw"}
    assert out["alpha"].shape == out["alpha_raw"].shape == (2, 1, 32, 32)
    alpha = out["alpha"]
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    assert (alpha[..., :8, :] == 0).all() and (alpha[..., 24:, :] == 1).all()
    assert torch.equal(alpha[..., 8:24, :], out["alpha_raw"][..., 8:24, :].clamp(0, 1))


def test_index_block_maps() -> None:
    torch.manual_seed(0)
    enc, dec = IndexBlock(8)(torch.randn(2, 8, 16, 12))
    assert enc.shape == dec.shape == (2, 8, 16, 12)
    # The encoder index is a softmax over each 2x2 cell; the decoder index a sigmoid.
    cell_sums = torch.nn.functional.avg_pool2d(enc, 2) * 4
    assert torch.allclose(cell_sums, torch.ones_like(cell_sums), atol=1e-6)
    assert dec.min() > 0 and dec.max() < 1


def test_rejects_size_not_multiple_of_32() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        IndexNet()(torch.zeros(1, 3, 64, 80), torch.zeros(1, 1, 64, 80))


def test_matches_official_manifest_and_param_count() -> None:
    manifest = json.loads((DATA / "indexnet_manifest.json").read_text())
    net = IndexNet()
    assert [[k, list(v.shape)] for k, v in net.state_dict().items()] == manifest["keys"]
    # Official hlmobilenetv2(decoder='indexnet', ...) with its demo's arguments: 5,953,515.
    assert sum(p.numel() for p in net.parameters()) == 5_953_515
    assert IndexNet(**net.arch_config()).state_dict().keys() == net.state_dict().keys()


def test_param_groups_split_new_and_pretrained_layers() -> None:
    net = IndexNet()
    new, pretrained = net.param_groups()
    assert (new["lr_scale"], pretrained["lr_scale"]) == (1.0, 0.01)
    names = {id(p): n for n, p in net.named_parameters()}
    assert all(names[id(p)].startswith(("layer",)) for p in pretrained["params"])
    assert any(names[id(p)].startswith("dconv_pp") for p in new["params"])
    assert len(new["params"]) + len(pretrained["params"]) == len(list(net.parameters()))


@pytest.mark.slow
def test_adam_steps_lower_the_loss(adam_losses) -> None:
    torch.manual_seed(0)
    net = IndexNet().train()
    loss_fn = IndexNetLoss()
    b = _batch()
    losses = adam_losses(net, loss_fn, b, steps=5)
    assert losses[-1] < 0.8 * losses[0]


def test_state_dict_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = IndexNet().eval()
    path = tmp_path / "indexnet.pt"
    torch.save(net.state_dict(), path)
    other = IndexNet()
    other.load_state_dict(torch.load(path, weights_only=True))
    other.eval()
    b = _batch()
    with torch.no_grad():
        assert torch.equal(
            net(b["image"], b["trimap"])["alpha"], other(b["image"], b["trimap"])["alpha"]
        )
