"""The matting LightningModule: a real Trainer through fit, validation and test."""

from __future__ import annotations

import math
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


def _small_task(**kwargs) -> MattingTask:
    """A fast registered network (MODNet at reduced widths) for the optimisation tests."""
    from p3m_lightning.methods.modnet.loss import MODNetLoss
    from p3m_lightning.methods.modnet.network import MODNet

    return MattingTask(MODNet(hr_channels=8, width_mult=0.25), loss=MODNetLoss(), **kwargs)


def _warmup_cosine(warmup: int, total: int):
    """GCA's schedule shape on a small scale: linear warm-up, then cosine to 0 at ``total``."""
    from p3m_lightning.schedules import sequential

    return partial(
        sequential,
        schedulers=[
            partial(
                torch.optim.lr_scheduler.LinearLR, start_factor=1 / warmup, total_iters=warmup - 1
            ),
            partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=total - warmup),
        ],
        milestones=[warmup - 1],
    )


def _official_gca_lr(step: int, lr: float, warmup: int, total: int) -> float:
    """GCA's trainer.py:164-170: lr x (s + 1) / W while warming up, then cosine per step."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * (1 + math.cos(math.pi * (step - warmup + 1) / (total - warmup))) / 2


class _LearningRates(pl.Callback):
    """The generator's learning rate at each training batch."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_per_step_scheduler_follows_the_official_warmup_and_cosine(tmp_path) -> None:
    # Two batches per epoch: a per-epoch scheduler would hold each rate for two steps.
    lr, warmup, total = 1e-3, 3, 7
    task = _small_task(
        optimizer=partial(torch.optim.Adam, lr=lr),
        scheduler=_warmup_cosine(warmup, total),
        scheduler_interval="step",
    )
    rates = _LearningRates()
    trainer = _trainer(tmp_path, max_steps=total, callbacks=[rates], limit_val_batches=0)
    trainer.fit(task, datamodule=_TinyData())
    expected = [_official_gca_lr(s, lr, warmup, total) for s in range(total)]
    assert rates.seen == pytest.approx(expected, rel=1e-12, abs=1e-18)
    assert expected[:4] == pytest.approx([lr / 3, 2 * lr / 3, lr, lr * (2 + 2**0.5) / 4])


def test_per_step_scheduler_with_manual_optimisation(tmp_path) -> None:
    from p3m_lightning.methods.alphagan.loss import AlphaGANLoss, discriminator_loss
    from p3m_lightning.methods.alphagan.network import AlphaGANGenerator
    from p3m_lightning.models.layers import PatchDiscriminator

    lr, warmup, total = 1e-3, 2, 5
    task = MattingTask(
        AlphaGANGenerator(width=8, aspp_width=8),
        loss=AlphaGANLoss(),
        optimizer=partial(torch.optim.Adam, lr=lr),
        scheduler=_warmup_cosine(warmup, total),
        scheduler_interval="step",
        discriminator=PatchDiscriminator(width=8),
        discriminator_loss=discriminator_loss,
        strategy="trimap_guided",
    )
    rates = _LearningRates()
    # Manual optimisation counts both optimisers' steps: 5 batches = 10 steps.
    trainer = _trainer(tmp_path, max_steps=2 * total, callbacks=[rates], limit_val_batches=0)
    trainer.fit(task, datamodule=_TinyData())
    expected = [_official_gca_lr(s, lr, warmup, total) for s in range(total)]
    assert rates.seen == pytest.approx(expected, rel=1e-12, abs=1e-18)


def test_scheduler_interval_is_checked() -> None:
    with pytest.raises(ValueError, match="scheduler_interval must be 'epoch' or 'step'"):
        _small_task(scheduler_interval="batch")


def _norm(grads: list[torch.Tensor]) -> float:
    return float(
        torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    )


class _GradientNorms(pl.Callback):
    """The gradient norm of each step before clipping, and the one the optimiser steps with."""

    def __init__(self) -> None:
        self.before: list[float] = []
        self.after: list[float] = []

    @staticmethod
    def _grads(optimizer) -> list[torch.Tensor]:
        return [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.before.append(_norm(self._grads(optimizer)))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # The closure runs inside optimizer.step: after it, the gradients are the clipped ones.
        self.after.append(_norm(self._grads(trainer.optimizers[0])))


def test_moving_max_clipping_through_the_trainer(tmp_path) -> None:
    from p3m_lightning.methods.gca.clipping import MovingMaxClipping

    # factor 0.1: every step after the first clips (at a tenth of the moving maximum).
    clipping = MovingMaxClipping(factor=0.1, momentum=0.9)
    task = _small_task(optimizer=partial(torch.optim.Adam, lr=1e-4), gradient_clipping=clipping)
    norms = _GradientNorms()
    trainer = _trainer(tmp_path, max_steps=3, callbacks=[norms], limit_val_batches=0)
    trainer.fit(task, datamodule=_TinyData())
    u1, u2, u3 = norms.before
    m1 = u1
    m2 = 0.9 * m1 + 0.1 * u2
    assert norms.after == pytest.approx([u1, min(u2, 0.1 * m1), min(u3, 0.1 * m2)], rel=1e-4)
    assert u2 > 0.1 * m1 and u3 > 0.1 * m2  # so both later steps did clip
    assert clipping.state_dict()["moving_max"] == pytest.approx(0.9 * m2 + 0.1 * u3, rel=1e-5)
    assert float(trainer.callback_metrics["train/grad_norm"]) == pytest.approx(u3, rel=1e-5)
    # The moving maximum travels with the checkpoint (exact resume).
    path = tmp_path / "clip.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["gradient_clipping"]
    assert saved == clipping.state_dict()
    resumed = MovingMaxClipping()
    _small_task(gradient_clipping=resumed).on_load_checkpoint({"gradient_clipping": saved})
    assert resumed.state_dict() == saved


def test_a_fixed_norm_clips_through_the_same_hook(tmp_path) -> None:
    task = _small_task(
        optimizer=partial(torch.optim.Adam, lr=1e-4),
        gradient_clipping=partial(torch.nn.utils.clip_grad_norm_, max_norm=1e-3),
    )
    norms = _GradientNorms()
    trainer = _trainer(tmp_path, max_steps=2, callbacks=[norms], limit_val_batches=0)
    trainer.fit(task, datamodule=_TinyData())
    assert min(norms.before) > 1e-2
    assert norms.after == pytest.approx([1e-3, 1e-3], rel=1e-4)
    both = _trainer(tmp_path, max_steps=1, gradient_clip_val=1.0, limit_val_batches=0)
    with pytest.raises(ValueError, match="set trainer.gradient_clip_val=null"):
        both.fit(task, datamodule=_TinyData())
