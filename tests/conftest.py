"""Shared pytest fixtures."""

from __future__ import annotations

import json
import math
import zlib
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"


def golden_tensor(name: str, shape: list[int], dtype: str) -> torch.Tensor:
    """One tensor of the golden README's deterministic recipe."""
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    if name.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=getattr(torch, dtype))
    if name.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=gen)
    if name.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=gen)
    if len(shape) == 1 and name.endswith("weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=gen)
    if len(shape) == 1 and name.endswith("bias"):
        return 0.1 * torch.randn(shape, generator=gen)
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=gen) * math.sqrt(1.0 / fan_in)


@pytest.fixture(scope="session")
def manifest() -> dict:
    """The reference model's state_dict names, shapes, dtypes and aliases."""
    return json.loads((DATA / "p3mnet_r34_manifest.json").read_text())


@pytest.fixture(scope="session")
def golden_state(manifest: dict) -> OrderedDict[str, torch.Tensor]:
    """A published-format state dict (713 names) filled by the golden recipe."""
    aliases = manifest["aliases"]
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, shape, dtype in manifest["keys"]:
        if name not in aliases:
            state[name] = golden_tensor(name, shape, dtype)
    for name, _, _ in manifest["keys"]:
        if name in aliases:
            state[name] = state[aliases[name]].clone()
    return OrderedDict((name, state[name]) for name, _, _ in manifest["keys"])


@pytest.fixture(scope="session")
def golden_checkpoint(tmp_path_factory: pytest.TempPathFactory, golden_state) -> Path:
    """The golden weights saved as an official checkpoint, ``{"state_dict": ...}``."""
    path = tmp_path_factory.mktemp("golden") / "p3mnet_golden.pth"
    torch.save({"state_dict": golden_state}, path)
    return path


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weights P3M-Net in the published checkpoint format."""
    from p3m_lightning.methods.p3m_net.network import P3MNet
    from p3m_lightning.methods.p3m_net.published import save_published

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "p3mnet_random.pth"
    save_published(P3MNet(), path)
    return path


def _adam_losses(
    model: torch.nn.Module,
    loss_fn: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    steps: int,
    lr: float = 1e-3,
) -> list[float]:
    """The loss before each of ``steps`` Adam steps on one fixed batch.

    The model takes the batch keys its ``inputs`` names (``("image",)`` when it names none).
    """
    inputs = [batch[key] for key in getattr(model, "inputs", ("image",))]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(*inputs), batch)["loss"]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.fixture
def adam_losses():
    """``adam_losses(model, loss_fn, batch, steps, lr=1e-3) -> [loss per step]``."""
    return _adam_losses


@pytest.fixture
def compose_train():
    """``compose_train(tmp, overrides)``: conf/train.yaml composed, its run folder in ``tmp``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    conf = Path(__file__).resolve().parents[1] / "conf"

    def _compose(tmp: Path, overrides: list[str]):
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp / "out")
            cfg.paths.root_dir = str(tmp)
        return cfg

    return _compose
