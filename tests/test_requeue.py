"""Which checkpoint a run folder continues from (`p3m_lightning.requeue.resume_checkpoint`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from p3m_lightning.requeue import resume_checkpoint


def _checkpoints(run: Path, **steps: int) -> Path:
    folder = run / "checkpoints"
    folder.mkdir(parents=True)
    for name, step in steps.items():
        torch.save({"global_step": step, "state_dict": {}}, folder / f"{name}.ckpt")
    return folder


def test_a_new_run_folder_starts_afresh(tmp_path: Path) -> None:
    assert resume_checkpoint(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    assert resume_checkpoint(tmp_path) is None


def test_a_run_stopped_before_its_first_step_starts_afresh(tmp_path: Path) -> None:
    # e.g. stopped while testing the untrained model: starting again also redoes that test.
    _checkpoints(tmp_path, interrupted=0)
    assert resume_checkpoint(tmp_path) is None


@pytest.mark.parametrize(
    ("steps", "chosen"),
    [
        ({"last": 4}, "last"),
        ({"interrupted": 3}, "interrupted"),
        # Stopped mid-epoch after the last epoch's end: the later state.
        ({"last": 4, "interrupted": 6}, "interrupted"),
        # A resumed run went on past the step it was stopped at.
        ({"last": 8, "interrupted": 6}, "last"),
        # Stopped at an epoch's last batch: last.ckpt also holds the epoch's end.
        ({"last": 4, "interrupted": 4}, "last"),
    ],
)
def test_the_checkpoint_with_the_most_steps(tmp_path: Path, steps: dict, chosen: str) -> None:
    folder = _checkpoints(tmp_path, **steps)
    assert resume_checkpoint(tmp_path) == {
        "checkpoint": str(folder / f"{chosen}.ckpt"),
        "global_step": steps[chosen],
    }


def test_an_unreadable_checkpoint_is_skipped(tmp_path: Path, caplog) -> None:
    folder = _checkpoints(tmp_path, last=4)
    (folder / "interrupted.ckpt").write_bytes(b"cut off by a kill")
    with caplog.at_level(logging.WARNING, logger="p3m_lightning.requeue"):
        assert resume_checkpoint(tmp_path) == {
            "checkpoint": str(folder / "last.ckpt"),
            "global_step": 4,
        }
    assert "interrupted.ckpt" in caplog.text and "resuming from" in caplog.text


def test_ddp_inside_the_local_launcher_is_refused_before_it_hangs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compose_train
) -> None:
    from p3m_lightning.train import ConfigError, train

    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    cfg = compose_train(tmp_path, ["trainer=ddp_sim", "logger=none"])
    with pytest.raises(ConfigError, match="hydra/launcher=local runs each job as one process"):
        train(cfg)
