"""The architecture allow-list: what a checkpoint may rebuild, and how files name it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from p3m_lightning.methods.gfm.network import GFMNet
from p3m_lightning.models.checkpoint import architecture_record, load_checkpoint, load_model
from p3m_lightning.models.registry import ARCHITECTURES, architecture_of, build_architecture
from p3m_lightning.models.safe_load import CheckpointError
from p3m_lightning.strategies import build_strategy

BUILTIN = {
    "p3m_net",
    "p3m_journal",
    "gfm",
    "modnet",
    "shm",
    "lf",
    "hatt",
    "basic",
    "dim",
    "alphagan",
    "gca",
    "indexnet",
    "fba",
}


def test_every_builtin_resolves_to_a_contract_network() -> None:
    assert set(ARCHITECTURES) >= BUILTIN
    for name in BUILTIN:
        architecture = ARCHITECTURES[name]
        cls = architecture.resolve()
        assert set(cls.inputs) <= {"image", "trimap", "bg"} and "image" in cls.inputs, name
        assert isinstance(cls.input_divisor, int), name
        assert build_strategy(architecture.default_strategy), name  # a known, valid spec
        assert build_strategy(architecture.photo_strategy or architecture.default_strategy)


def test_a_checkpoint_cannot_name_code_outside_the_allow_list(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save(
        {"state_dict": {}, "architecture": {"name": "os:system", "config": {"command": "x"}}},
        path,
    )
    with pytest.raises(CheckpointError, match=r"evil.ckpt: unknown architecture 'os:system'"):
        load_model(path)
    with pytest.raises(CheckpointError, match="cannot build gfm"):
        build_architecture("gfm", {"no_such_argument": 1}, "x.ckpt")
    # Values the constructor rejects in any way are a named error, not a traceback.
    with pytest.raises(CheckpointError, match="x.ckpt: cannot build gfm"):
        build_architecture("gfm", {"width": -1}, "x.ckpt")


def test_a_checkpoint_cannot_make_the_loader_read_other_files(tmp_path: Path) -> None:
    """Initialisation keys (local files, the hub) in a recorded config are ignored."""
    net = GFMNet(width=8).eval()
    path = tmp_path / "gfm.ckpt"
    record = {"name": "gfm", "config": {"width": 8, "pretrained_path": "/dev/zero"}}
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
            "architecture": record,
        },
        path,
    )
    loaded = load_model(path)  # /dev/zero would never finish loading
    assert architecture_of(loaded).name == "gfm"


def test_record_round_trip_rebuilds_the_same_network(tmp_path: Path) -> None:
    net = GFMNet(width=8).eval()
    record = architecture_record(net)
    assert record == {
        "name": "gfm",
        "config": {"rosta": "TT", "width": 8},
        "strategy": "gfm_hybrid",
        "channels_last": False,
    }
    path = tmp_path / "gfm.ckpt"
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
            "architecture": record,
        },
        path,
    )
    loaded = load_checkpoint(path)
    assert (loaded.architecture, loaded.strategy) == ("gfm", "gfm_hybrid")
    assert not loaded.channels_last
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        # The same layout as the network was evaluated in: the same figures, bit for bit.
        torch.testing.assert_close(loaded.net(x)["alpha"], net(x)["alpha"], rtol=0, atol=0)


def test_released_state_dict_loads_when_its_architecture_is_named(tmp_path: Path) -> None:
    net = GFMNet(width=8).eval()
    path = tmp_path / "released.pth"
    # As the authors' DataParallel trainer saves it: module. prefixes.
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    with pytest.raises(CheckpointError, match="name it with architecture=<name>"):
        load_model(path)  # read as P3M-Net by default
    loaded = load_model(path, architecture="gfm", architecture_config={"width": 8})
    assert architecture_of(loaded).name == "gfm"
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x)["alpha"], net(x)["alpha"])


def test_unregistered_class_cannot_be_recorded() -> None:
    with pytest.raises(ValueError, match="not a registered architecture"):
        architecture_record(torch.nn.Conv2d(3, 1, 1))
