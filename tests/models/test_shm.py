"""SHMNet: outputs, a few Adam steps, state-dict round trip (reduced widths, 64x64)."""

import io

import pytest
import torch

from p3m_lightning.methods.shm.loss import SHMLoss
from p3m_lightning.methods.shm.network import SHMNet


def _small() -> SHMNet:
    torch.manual_seed(0)
    return SHMNet(psp_width=8, mnet_width_mult=0.125)


def test_outputs_keys_shapes_ranges() -> None:
    out = _small().eval()(torch.randn(2, 3, 64, 64))
    assert out["alpha"].shape == (2, 1, 64, 64)
    assert out["trimap_logits"].shape == (2, 3, 64, 64)
    assert out["alpha"].min() >= 0.0 and out["alpha"].max() <= 1.0
    with pytest.raises(ValueError):
        _small()(torch.randn(1, 3, 48, 40))


def test_round_trip_and_rebuild() -> None:
    net = _small().eval()
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    other = SHMNet(**net.arch_config()).eval()
    other.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(net(x)["alpha"], other(x)["alpha"])


@pytest.mark.slow
def test_adam_steps_lower_loss(adam_losses) -> None:
    net, loss_fn = _small(), SHMLoss()
    g = torch.Generator().manual_seed(1)
    alpha = (torch.rand(2, 1, 64, 64, generator=g) > 0.5).float()
    batch = {
        "image": torch.randn(2, 3, 64, 64, generator=g),
        "fg": torch.randn(2, 3, 64, 64, generator=g),
        "bg": torch.randn(2, 3, 64, 64, generator=g),
        "alpha": alpha,
        "trimap": alpha * 255,
    }
    losses = adam_losses(net, loss_fn, batch, steps=5)
    assert losses[-1] < losses[0]
