"""Tests of GCANet: contract, official layout, training and checkpoint round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from p3m_lightning.methods.gca.loss import GCALoss
from p3m_lightning.methods.gca.network import GCANet, trimap_one_hot

DATA = Path(__file__).resolve().parents[1] / "data"
SMALL = {"encoder_layers": (1, 1, 1, 1), "decoder_layers": (1, 1, 1, 1)}


def _batch(size: int = 64, batch: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    image = torch.randn(batch, 3, size, size, generator=g)
    trimap = torch.full((batch, 1, size, size), 128.0)
    trimap[..., : size // 4, :] = 0.0
    trimap[..., 3 * size // 4 :, :] = 255.0
    alpha = (trimap / 255.0).clone()
    alpha[..., size // 4 : 3 * size // 4, :] = torch.rand(batch, 1, size // 2, size, generator=g)
    return {"image": image, "trimap": trimap, "alpha": alpha}


def _warm_up(net: GCANet, batch: dict[str, torch.Tensor]) -> None:
    # One train-mode pass sets the spectral-norm vectors as training would.
    net.train()
    with torch.no_grad():
        net(batch["image"], batch["trimap"])
    net.eval()


def test_outputs_shapes_ranges_and_known_regions() -> None:
    torch.manual_seed(0)
    net = GCANet(**SMALL)
    b = _batch()
    _warm_up(net, b)
    with torch.no_grad():
        out = net(b["image"], b["trimap"])
    assert set(out) == {"alpha", "alpha_raw"}
    for t in out.values():
        assert t.shape == (2, 1, 64, 64)
        assert t.min() >= 0.0 and t.max() <= 1.0 and torch.isfinite(t).all()
    assert (out["alpha"][..., :16, :] == 0).all()
    assert (out["alpha"][..., 48:, :] == 1).all()
    assert torch.equal(out["alpha"][..., 16:48, :], out["alpha_raw"][..., 16:48, :])


def test_fresh_model_in_eval_mode_is_not_saturated() -> None:
    torch.manual_seed(0)
    b = _batch()
    with torch.no_grad():
        raw = GCANet(**SMALL).eval()(b["image"], b["trimap"])["alpha_raw"]
    # Converged spectral-norm vectors at init: outputs stay inside (0, 1).
    assert raw.min() > 0.0 and raw.max() < 1.0


def test_trimap_one_hot() -> None:
    t = torch.tensor([0.0, 128.0, 255.0]).view(1, 1, 1, 3)
    assert trimap_one_hot(t)[0, :, 0].tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_rejects_size_not_multiple_of_32() -> None:
    net = GCANet(**SMALL)
    with pytest.raises(ValueError, match="multiple of 32"):
        net(torch.zeros(1, 3, 48, 64), torch.zeros(1, 1, 48, 64))


def test_full_model_matches_official_manifest_and_param_count() -> None:
    manifest = json.loads((DATA / "gca_manifest.json").read_text())
    net = GCANet()
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert ours == {k: shape for k, shape in manifest["keys"]}
    # Official Generator(resnet_gca_encoder_29, res_gca_decoder_22): 25,269,144 numbers in its
    # parameters, of which 104,615 are the frozen spectral-norm u/v vectors (buffers here).
    trainable = sum(p.numel() for p in net.parameters())
    uv = sum(b.numel() for k, b in net.named_buffers() if k.endswith(("weight_u", "weight_v")))
    assert trainable == 25_164_529
    assert trainable + uv == 25_269_144


def test_arch_config_rebuilds() -> None:
    net = GCANet(**SMALL)
    again = GCANet(**net.arch_config())
    assert (
        again.arch_config()
        == net.arch_config()
        == {
            "encoder_layers": [1, 1, 1, 1],
            "decoder_layers": [1, 1, 1, 1],
        }
    )
    assert again.load_state_dict(net.state_dict()) is not None


def test_adam_steps_lower_the_loss(adam_losses) -> None:
    torch.manual_seed(0)
    net = GCANet(**SMALL).train()
    loss_fn = GCALoss()
    b = _batch()
    losses = adam_losses(net, loss_fn, b, steps=6)
    assert losses[-1] < 0.8 * losses[0]


def test_state_dict_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = GCANet(**SMALL)
    b = _batch()
    _warm_up(net, b)
    path = tmp_path / "gca.pt"
    torch.save(net.state_dict(), path)
    other = GCANet(**SMALL)
    other.load_state_dict(torch.load(path, weights_only=True))
    other.eval()
    with torch.no_grad():
        assert torch.equal(
            net(b["image"], b["trimap"])["alpha"], other(b["image"], b["trimap"])["alpha"]
        )


def test_moving_max_clipping_follows_the_official_rule() -> None:
    """trainer.py:204-212: first step at 1e6, then 2 x moving max, momentum 0.999."""
    from p3m_lightning.methods.gca.clipping import MovingMaxClipping

    param = torch.nn.Parameter(torch.zeros(2))
    clip = MovingMaxClipping()

    def step(grad: list[float]) -> tuple[float, list[float]]:
        param.grad = torch.tensor(grad)
        norm = float(clip([param]))
        return norm, param.grad.tolist()

    assert step([3.0, 4.0]) == (5.0, [3.0, 4.0])  # first step: clipped at 1e6 only
    assert clip.state_dict() == {"moving_max": 5.0}
    norm, grad = step([60.0, 80.0])  # norm 100 > 2 x 5: clipped to 10
    assert norm == 100.0 and grad == pytest.approx([6.0, 8.0], rel=1e-6)
    assert clip.state_dict()["moving_max"] == pytest.approx(0.999 * 5 + 0.001 * 100)
    norm, grad = step([6.0, 8.0])  # 10 < 2 x 5.095: untouched
    assert grad == [6.0, 8.0]
    assert clip.state_dict()["moving_max"] == pytest.approx(0.999 * 5.095 + 0.001 * 10)
    with pytest.raises(ValueError, match="momentum < 1"):
        MovingMaxClipping(momentum=1.0)
