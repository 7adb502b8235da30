"""SLURM without a cluster: the job script the launcher config asks for, and the ranks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities.rank_zero import rank_zero_only

CONF = Path(__file__).resolve().parents[1] / "conf"
OVERRIDES = [
    "hydra/launcher=slurm",
    "trainer=ddp",
    "trainer.devices=4",
    "trainer.num_nodes=2",
    "hydra.launcher.partition=gpu",
]


def _launcher_params() -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=OVERRIDES, return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    for key in ("nodes", "tasks_per_node", "gpus_per_node"):
        # Interpolations of the run's trainer settings, as submitit sees them at launch.
        launcher[key] = OmegaConf.select(cfg, str(launcher[key]).strip("${}"))
    return launcher


def test_slurm_launcher_asks_for_one_task_per_gpu_on_every_node() -> None:
    params = _launcher_params()
    assert params["_target_"].endswith("SlurmLauncher")
    assert (params["nodes"], params["tasks_per_node"], params["gpus_per_node"]) == (2, 4, 4)


def test_the_submitted_job_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    submitit = pytest.importorskip("submitit")
    # submitit looks for srun before writing anything; this machine has no SLURM.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    params = _launcher_params()
    executor = submitit.SlurmExecutor(folder=tmp_path)
    executor.update_parameters(
        nodes=params["nodes"],
        ntasks_per_node=params["tasks_per_node"],
        gpus_per_node=params["gpus_per_node"],
        cpus_per_task=params["cpus_per_task"],
        mem=f"{params['mem_gb']}GB",
        time=params["timeout_min"],
        partition=params["partition"],
    )
    script = executor._make_submission_file_text("python -u train.py", "job")
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=4320",
    ):
        assert line in script, script
    # One srun task per GPU on each node: SLURM, not Lightning, starts the processes.
    assert "srun" in script


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
