"""The matting LightningModule: a real Trainer through fit, validation and test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from p3m_lightning.methods.p3m_net.network import P3MNet
from p3m_lightning.models.checkpoint import load_model
from p3m_lightning.task import MattingTask

REPO = Path(__file__).resolve().parents[1]
SETS = ["P3M-500-P", "P3M-500-NP"]
METRICS = ["sad", "mse", "mad", "sad_trimap", "mse_trimap", "mad_trimap", "sad_fg", "sad_bg"]
METRICS += ["grad", "conn"]


class _TrainCrops(Dataset):
    def __init__(self, n: int, size: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.items = []
        for i in range(n):
            alpha = torch.zeros(1, size, size)
            alpha[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
            trimap = alpha * 255
            trimap[:, size // 4 - 3 : size // 4 + 3] = 128
            self.items.append(
                {
                    "image": torch.randn(3, size, size, generator=gen),
                    "alpha": alpha,
                    "trimap": trimap,
                    "fg": torch.randn(3, size, size, generator=gen),
                    "bg": torch.randn(3, size, size, generator=gen),
                    "name": f"t{i}",
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class _WholeImages(Dataset):
    def __init__(self, sizes: list[tuple[int, int]]) -> None:
        gen = torch.Generator().manual_seed(1)
        self.items = []
        for h, w in sizes:
            alpha = (torch.rand(1, h, w, generator=gen) > 0.5).float()
            trimap = torch.full((1, h, w), 128, dtype=torch.uint8)
            self.items.append(
                {"image": torch.randn(3, h, w, generator=gen), "alpha": alpha, "trimap": trimap}
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class _TinyData(pl.LightningDataModule):
    eval_set_names = SETS

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_TrainCrops(4, 64), batch_size=2)

    def val_dataloader(self) -> list[DataLoader]:
        return [DataLoader(_WholeImages([(70, 90), (64, 64)]), batch_size=1) for _ in SETS]

    test_dataloader = val_dataloader


def _trainer(tmp_path, **kwargs) -> pl.Trainer:
    options = dict(
        default_root_dir=tmp_path,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    options.update(kwargs)
    return pl.Trainer(**options)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[pl.Trainer, MattingTask, dict]:
    tmp = tmp_path_factory.mktemp("task")
    task = MattingTask(P3MNet(), optimizer=partial(torch.optim.Adam, lr=1e-4))
    trainer = _trainer(tmp, fast_dev_run=True)
    trainer.fit(task, datamodule=_TinyData())
    logged = dict(trainer.callback_metrics)
    trainer.test(task, datamodule=_TinyData(), verbose=False)
    logged.update(trainer.callback_metrics)
    return trainer, task, logged


def test_training_logs_every_term(fitted) -> None:
    _, _, logged = fitted
    for term in ("loss", "loss_global", "loss_local", "loss_fusion", "loss_comp"):
        assert f"train/{term}_step" in logged or f"train/{term}" in logged, term
        key = f"train/{term}_step" if f"train/{term}_step" in logged else f"train/{term}"
        assert torch.isfinite(logged[key])


@pytest.mark.parametrize("stage", ["val", "test"])
def test_every_metric_is_logged_per_set(fitted, stage: str) -> None:
    _, _, logged = fitted
    for name in SETS:
        for metric in METRICS:
            key = f"{stage}/{name}/{metric}"
            assert key in logged, key
            assert torch.isfinite(logged[key]) and float(logged[key]) >= 0.0


def test_task_checkpoint_loads_with_load_model(fitted, tmp_path) -> None:
    trainer, task, _ = fitted
    path = tmp_path / "task.ckpt"
    trainer.save_checkpoint(path)
    model = load_model(path)
    x = torch.randn(1, 3, 64, 64)
    task.net.eval()
    with torch.inference_mode():
        torch.testing.assert_close(model(x)["local"], task.net(x)["local"], atol=1e-4, rtol=1e-4)
    raw = torch.load(path, weights_only=True)
    assert raw["architecture"] == {
        "name": "p3m_net",
        "config": {"encoder": {"type": "resnet34_mp"}},
        "strategy": "resize",
        "channels_last": False,
    }
    assert "net" not in raw["hyper_parameters"]


def test_encoder_gets_its_own_learning_rate() -> None:
    task = MattingTask(P3MNet(), optimizer=partial(torch.optim.Adam, lr=1e-3), encoder_lr=1e-5)
    optimizer = task.configure_optimizers()["optimizer"]
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == {"decoder": 1e-3, "encoder": 1e-5}
    encoder_params = sum(p.numel() for p in optimizer.param_groups[1]["params"])
    assert encoder_params == sum(
        p.numel() for p in task.net.encoder.parameters() if p.requires_grad
    )


def test_scheduler_from_config() -> None:
    task = MattingTask(
        P3MNet(), scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=10, gamma=0.5)
    )
    config = task.configure_optimizers()
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert config["optimizer"].param_groups[0]["lr"] == 1e-5


def test_bf16_mixed_channels_last_hybrid(tmp_path) -> None:
    task = MattingTask(P3MNet(), strategy="hybrid", channels_last=True)
    assert task.net.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    trainer = _trainer(
        tmp_path,
        fast_dev_run=True,
        precision="bf16-mixed",
        gradient_clip_val=1.0,
        accumulate_grad_batches=2,
    )
    trainer.fit(task, datamodule=_TinyData())
    assert torch.isfinite(trainer.callback_metrics["train/loss_step"])
    assert "val/P3M-500-NP/sad" in trainer.callback_metrics


def test_test_metrics_are_float32_under_bf16_mixed_training_precision(tmp_path) -> None:
    torch.manual_seed(0)
    task = MattingTask(P3MNet())
    results = {}
    for precision in ("bf16-mixed", "32-true"):
        trainer = _trainer(tmp_path / precision, precision=precision)
        (first, *_) = trainer.test(task, datamodule=_TinyData(), verbose=False)
        results[precision] = first
    # bf16 would move SAD by about 1e-3 relative; fp32 evaluation gives the same figures.
    assert results["bf16-mixed"] == results["32-true"]


@pytest.mark.slow
def test_a_process_whose_batch_is_all_skipped_joins_ddp_with_zero_gradients(tmp_path) -> None:
    """Two real gloo processes; at each step one of them has only ``privacy == "skipped"``.

    Skipping the step there would leave the other waiting in the gradient all-reduce (Lightning
    refuses it outright): the run must finish, both processes step alike, and the skipped
    samples add nothing to the weights or the BatchNorm statistics.
    """
    script = Path(__file__).with_name("ddp_skipped_batch.py")
    # The script imports this checkout's package (its own folder comes first on sys.path).
    pythonpath = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": pythonpath},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        # Both processes are in the session this test started.
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail("the DDP run hung (killed after 300 s):\n" + output[-3000:])
    assert process.returncode == 0, output[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["global_step"] for r in ranks] == [2, 2]
    torch.manual_seed(0)  # the script's initial weights
    start = dict(P3MNet().named_parameters())
    moved = sum(int(not torch.equal(v, start[n])) for n, v in ranks[0]["params"].items())
    assert moved > 0.9 * len(start), "the processes did not train"
    reference = ranks[0]["reference"]
    for name, value in ranks[0]["params"].items():
        torch.testing.assert_close(ranks[1]["params"][name], value, rtol=0, atol=0)
        # Zero gradients from the skipped batches halve the others: SGD at half the rate on
        # samples 0 and 2.
        torch.testing.assert_close(value, reference["params"][name])
    # Buffers follow rank 0 (DDP broadcasts them before each forward): the skipped sample 3
    # left rank 0's as sample 0 made them, and rank 1 added sample 2 to those.
    for name, value in ranks[0]["buffers"].items():
        torch.testing.assert_close(value, ranks[0]["after_sample_0"]["buffers"][name])
        torch.testing.assert_close(ranks[1]["buffers"][name], reference["buffers"][name])
