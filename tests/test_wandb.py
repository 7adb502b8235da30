"""W&B logging without an account: a real offline run of a tiny fit, read back from disk."""

from __future__ import annotations

import json
import struct
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset
from wandb.proto import wandb_internal_pb2

from p3m_lightning.callbacks import (
    ImagePanelLogger,
    find_wandb_api_key,
    finish_wandb,
    make_wandb_logger,
)
from p3m_lightning.methods.p3m_net.network import P3MNet
from p3m_lightning.task import MattingTask

SETS = ["P3M-500-P", "P3M-500-NP"]

# The run file ``run-<id>.wandb`` is a LevelDB-style log of protobuf ``Record``s: a 7-byte
# header, then 32 KiB blocks of chunks, each with a 7-byte header (CRC, length, type). Offline
# runs of wandb >= 0.2x keep config and summary only there (``wandb sync`` uploads this file).
_BLOCK = 32 * 1024
_CHUNK_HEADER = struct.Struct("<IHB")
_FULL, _FIRST, _LAST = 1, 2, 4


def _records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    ident, magic, _ = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1), "not a W&B run file"
    records, pending, pos = [], b"", 7
    while pos + _CHUNK_HEADER.size <= len(data):
        if _BLOCK - pos % _BLOCK < _CHUNK_HEADER.size:  # block trailer padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        pos += _CHUNK_HEADER.size
        if kind == 0:
            break
        chunk, pos = data[pos : pos + length], pos + length
        pending = chunk if kind in (_FULL, _FIRST) else pending + chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def _read_offline_run(path: Path) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The run record, the final config and the final summary of an offline run file."""
    run, config, summary = None, {}, {}
    for record in _records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
        elif kind == "config":
            config.update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            for item in record.summary.update:
                keys = [item.key] if item.key else list(item.nested_key)
                target = summary
                for key in keys[:-1]:
                    target = target.setdefault(key, {})
                target[keys[-1]] = json.loads(item.value_json)
    assert run is not None, "no run record"
    return run, config, summary


class _Crops(Dataset):
    """Training crops: a square of foreground on noise."""

    def __init__(self, n: int, size: int) -> None:
        gen = torch.Generator().manual_seed(0)
        alpha = torch.zeros(1, size, size)
        alpha[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
        trimap = alpha * 255
        trimap[:, size // 4 - 3 : size // 4 + 3] = 128
        self.items = [
            {
                "image": torch.randn(3, size, size, generator=gen),
                "alpha": alpha,
                "trimap": trimap,
                "fg": torch.randn(3, size, size, generator=gen),
                "bg": torch.randn(3, size, size, generator=gen),
                "name": f"t{i}",
            }
            for i in range(n)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class _Whole(Dataset):
    """Whole evaluation images, named, with a face mask like P3M-500-P."""

    def __init__(self, n: int, size: int) -> None:
        gen = torch.Generator().manual_seed(1)
        self.items = []
        for i in range(n):
            face_mask = torch.zeros(1, size, size, dtype=torch.uint8)
            face_mask[:, 8:24, 24:40] = 255
            self.items.append(
                {
                    "image": torch.randn(3, size, size, generator=gen),
                    "alpha": (torch.rand(1, size, size, generator=gen) > 0.5).float(),
                    "trimap": torch.full((1, size, size), 128, dtype=torch.uint8),
                    "face_mask": face_mask,
                    "name": f"img{i}",
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class _Data(pl.LightningDataModule):
    eval_set_names = SETS

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Crops(4, 64), batch_size=2)

    def val_dataloader(self) -> list[DataLoader]:
        return [DataLoader(_Whole(2, 64), batch_size=1) for _ in SETS]


@pytest.fixture
def no_wandb_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No API key anywhere, and every W&B file under ``tmp_path``; returns the run folder."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        # delenv also restores the variable afterwards: WandbLogger sets WANDB_MODE itself.
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    return tmp_path / "run"


def test_api_key_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    assert find_wandb_api_key() is None
    netrc.write_text("machine example.com login user password other\n")
    assert find_wandb_api_key() is None
    netrc.write_text("machine api.wandb.ai login user password k" + "0" * 39 + "\n")
    assert find_wandb_api_key() == "k" + "0" * 39
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.com")
    assert find_wandb_api_key() is None
    monkeypatch.setenv("WANDB_API_KEY", "from-env")
    assert find_wandb_api_key() == "from-env"


@pytest.mark.slow
def test_offline_run_without_api_key(no_wandb_account: Path) -> None:
    save_dir = no_wandb_account
    logger = make_wandb_logger(
        save_dir=save_dir,
        project="p3m-lightning-test",
        log_model=False,
        group="ppt_bb",
        name="ppt_bb-resnet34_mp-s0",
        tags=["ppt_bb"],
        extra_tags=["resnet34_mp", "seed=0"],
    )
    assert logger._offline
    params = {"task_name": "ppt_bb", "seed": 0, "model": {"encoder": "resnet34_mp"}}
    logger.log_hyperparams(params)
    trainer = pl.Trainer(
        default_root_dir=save_dir,
        accelerator="cpu",
        logger=logger,
        callbacks=[ImagePanelLogger(num_images=1)],
        max_steps=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    try:
        trainer.fit(
            MattingTask(P3MNet(), optimizer=partial(torch.optim.Adam, lr=1e-4)),
            datamodule=_Data(),
        )
    finally:
        finish_wandb()

    runs = sorted((save_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((save_dir / "wandb").iterdir())
    run, config, summary = _read_offline_run(next(runs[0].glob("run-*.wandb")))
    assert run.run_group == "ppt_bb"
    assert run.display_name == "ppt_bb-resnet34_mp-s0"
    assert list(run.tags) == ["ppt_bb", "resnet34_mp", "seed=0"]
    assert config["task_name"] == "ppt_bb" and config["seed"] == 0
    assert config["model"] == {"encoder": "resnet34_mp"}
    for key in (
        "train/loss_epoch",
        "val/P3M-500-P/sad",
        "val/P3M-500-NP/mse",
        "trainer/global_step",
    ):
        assert key in summary, sorted(summary)
    for name in SETS:
        assert summary[f"val/{name}/panels"]["count"] == 1
        assert summary[f"val/{name}/panels"]["captions"] == ["img0"]
    panels = sorted((runs[0] / "files" / "media" / "images").rglob("*.png"))
    assert len(panels) == len(SETS), panels
