"""The cluster launchers without a cluster: hydra-submitit-launcher's own code, real jobs.

- ``hydra/launcher=slurm`` runs up to ``sbatch`` (a stand-in that keeps the job script and
  refuses the submission): the script and the requeue budget submitit would run with.
- ``hydra/launcher=local`` runs a sweep as real submitit jobs; one is sent the requeue signal
  mid-training, checkpoints, is requeued by submitit and resumes in its own run folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from p3m_lightning.data.synthetic import generate

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
submitit = pytest.importorskip("submitit")

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SYNTHETIC = {"n_train": 4, "n_val": 3, "min_side": 64, "max_side": 96}
# One optimiser step per epoch (4 images, batch 4): every batch ends an epoch, so a run stopped
# at a batch's end and resumed sees exactly the data of an uninterrupted run.
TINY_RUN = [
    *(f"data.synthetic.{key}={value}" for key, value in SYNTHETIC.items()),
    "data.train_size=64",
    "data.batch_size=4",
    "data.num_workers=0",
    "model=p3m_timm",
    "model.net.encoder.name=mobilenetv2_050",
    "model.net.encoder.stem_channels=[16,32]",
    # Enough epochs left after the first that the signal lands mid-training on a fast machine.
    "trainer.max_epochs=5",
    "trainer.check_val_every_n_epoch=1000",
    "+trainer.num_sanity_val_steps=0",
    "validate_before=false",
    "test=false",
    "logger=none",
    "callbacks.progress_bar=null",
    "callbacks.image_panels=null",
]


def test_slurm_launcher_submits_the_job_script_and_requeue_budget(tmp_path: Path) -> None:
    # Stand-ins: submitit looks for srun before submitting; sbatch keeps the script it is given.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").write_text(
        '#!/bin/sh\ncp "$1" "$SBATCH_RECORD"\necho "sbatch: no cluster in this test" >&2\nexit 1\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    sweep = tmp_path / "sweep"
    script = tmp_path / "job.sh"
    command = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        "hydra/launcher=slurm",
        "experiment=ppt_b,ppt_n",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "hydra.launcher.partition=gpu",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SBATCH_RECORD": str(script)}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert "sbatch: no cluster in this test" in done.stderr, (
        done.stdout[-3000:] + done.stderr[-3000:]
    )
    text = script.read_text()
    for line in (
        "#SBATCH --array=0-1%2",  # one job per run of the sweep
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",  # one task per GPU: SLURM, not Lightning, starts ranks
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=4320",
        "#SBATCH --signal=USR2@120",  # the requeue signal, 2 minutes before the time limit
    ):
        assert line in text, text
    assert "srun" in text and "submitit.core._submit" in text
    # What submitit pickled for each job: the launcher itself (its checkpoint() requeues the
    # same job) and how many time-outs may still requeue it.
    pickles = sorted((sweep / ".submitit").glob("*.pkl"))
    assert len(pickles) == 2
    for path in pickles:
        delayed = submitit.helpers.DelayedSubmission.load(path)
        assert callable(getattr(delayed.function, "checkpoint", None))
        assert delayed._timeout_countdown == 3, "max_num_timeout of conf/hydra/launcher/slurm.yaml"


def test_lightning_takes_its_ranks_from_slurm(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "SLURM_NTASKS": "8",
        "SLURM_NTASKS_PER_NODE": "4",
        "SLURM_JOB_NAME": "ppt_b",
        "SLURM_JOB_ID": "4242",
        "SLURM_NODELIST": "node[1-2]",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The DDP strategy sets the process-wide rank_zero_only.rank to its global rank (5 here);
    # it must not outlive this test (a later logger would think it is not rank zero).
    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=4",
                       "trainer.num_nodes=2", f"paths.output_dir={tmp_path}"],
        )  # fmt: skip
    trainer = instantiate(cfg.trainer, logger=False)
    environment = trainer.strategy.cluster_environment
    assert isinstance(environment, SLURMEnvironment)
    assert environment.creates_processes_externally
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank) == (5, 1, 1)
    assert trainer.world_size == 8


def _job_process(run: Path) -> int:
    """The process of the submitit job that runs in ``run``: the child of the job's controller,
    whose pid is the local job id Hydra records as ``hydra.job.id``."""
    job_id = OmegaConf.load(run / ".hydra" / "hydra.yaml").hydra.job.id
    children = Path(f"/proc/{job_id}/task/{job_id}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _wait_for(path: Path, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.is_file():
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"the sweep ended before {path} was written:\n{output[-3000:]}")
        assert time.monotonic() < deadline, f"{path} not written in {seconds} s"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the job through /proc")
def test_local_launcher_sweep_requeues_and_resumes_exactly(tmp_path: Path) -> None:
    data_root = tmp_path / "p3m10k"
    generate(data_root, **SYNTHETIC)  # once, before two jobs read it
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        "hydra/launcher=local",
        # Two jobs of the same recipe: job 0 is requeued mid-training, job 1 is its twin.
        "seed=3,3",
        f"hydra.sweep.dir={sweep}",
        f"paths.root_dir={tmp_path}",
        f"data.root={data_root}",
        *TINY_RUN,
    ]
    # The jobs unpickle the task in fresh processes: they must import this checkout's package.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    requeued, twin = sweep / "0_quickstart", sweep / "1_quickstart"
    try:
        # After the first epoch's checkpoint, as SLURM would before a time limit.
        _wait_for(requeued / "checkpoints" / "last.ckpt", process, 600)
        os.kill(_job_process(requeued), signal.SIGUSR2)
        # The signal checkpoint (removed again once the resumed run completes).
        _wait_for(requeued / "checkpoints" / "interrupted.ckpt", process, 600)
        stopped = torch.load(requeued / "checkpoints" / "interrupted.ckpt", weights_only=True)
        output, _ = process.communicate(timeout=900)
    finally:
        process.kill()
    assert process.returncode == 0, output[-3000:]

    for run in (requeued, twin):
        assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    first, second = (json.loads((run / "metrics.json").read_text()) for run in (requeued, twin))
    assert second["resumed_from"] is None
    # Job 0 stopped at a batch's end; submitit requeued it; it started again in its own folder
    # and resumed by itself from its newest checkpoint, the step it stopped at.
    resumed = first["resumed_from"]
    assert Path(resumed["checkpoint"]).parent == requeued / "checkpoints", resumed
    log = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.out"))
    assert "Requeued job" in log and "resuming from" in log
    assert f"Restored all states from the checkpoint at {resumed['checkpoint']}" in log
    a, b = (
        torch.load(r / "checkpoints" / "last.ckpt", weights_only=True) for r in (requeued, twin)
    )
    assert 2 <= resumed["global_step"] == stopped["global_step"] < a["global_step"]
    assert (a["global_step"], a["epoch"]) == (b["global_step"], b["epoch"]) == (5, 4)
    # Adam went on counting from the checkpoint's state, not from a fresh optimiser.
    (state_a,), (state_b,) = (ck["optimizer_states"] for ck in (a, b))
    for key, moments in state_a["state"].items():
        assert float(moments["step"]) == 5
        torch.testing.assert_close(moments["exp_avg_sq"], state_b["state"][key]["exp_avg_sq"])
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][key], msg=key)
