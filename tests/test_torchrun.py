"""``torchrun`` starts the DDP processes (README, "One GPU, many GPUs, clusters"): 2 CPU ranks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from p3m_lightning.data.synthetic import generate

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = {"n_train": 4, "n_val": 3, "min_side": 64, "max_side": 96}


@pytest.mark.slow
def test_torchrun_two_processes_train_one_run(tmp_path: Path) -> None:
    torchrun = Path(sys.executable).parent / "torchrun"
    assert torchrun.is_file(), f"{torchrun} missing: torch installs it beside python"
    data_root = tmp_path / "p3m10k"
    generate(data_root, **SYNTHETIC)  # once, before two processes read it
    out = tmp_path / "run"
    command = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node=2",
        str(REPO / "train.py"),
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        # bf16 autocast on a CPU without bf16 units is slow and not what this test is about.
        "trainer.precision=32-true",
        # PyTorch's SyncBatchNorm runs on GPUs only.
        "trainer.sync_batchnorm=false",
        "trainer.max_epochs=1",
        f"hydra.run.dir={out}",
        f"paths.root_dir={tmp_path}",
        f"data.root={data_root}",
        *(f"data.synthetic.{key}={value}" for key, value in SYNTHETIC.items()),
        "data.train_size=64",
        "data.batch_size=4",
        "data.num_workers=0",
        "model=p3m_timm",
        "model.net.encoder.name=mobilenetv2_050",
        "model.net.encoder.stem_channels=[16,32]",
        "+trainer.num_sanity_val_steps=0",
        "validate_before=false",
        "logger=none",
        "callbacks.progress_bar=null",
        "callbacks.image_panels=null",
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    # Lightning took both ranks from torchrun's environment and started no process itself.
    for rank in (0, 1):
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in output, output[-4000:]
    result = json.loads((out / "metrics.json").read_text())
    assert result["batch"] == {
        "recipe": 4,
        "per_device": 2,
        "world_size": 2,
        "accumulate": 1,
        "effective": 4,
        "lr_scale": 1.0,
    }
    # Each test set scored once over both processes: all of its images.
    for name in ("P3M-500-P", "P3M-500-NP"):
        assert result["after"][f"test/{name}/n_images"] == SYNTHETIC["n_val"]
    assert (out / "checkpoints" / "last.ckpt").is_file()
