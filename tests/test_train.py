"""train.py end to end: configs, the embedded default, reproducibility, resume, SIGTERM, DDP."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from p3m_lightning.metrics import FACE_METRIC_NAMES, METRIC_NAMES
from p3m_lightning.models.checkpoint import load_model
from p3m_lightning.recipe import fingerprint
from p3m_lightning.train import train

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
TINY_DATA = [
    "data.synthetic.n_train=4",
    "data.synthetic.n_val=3",
    "data.synthetic.min_side=64",
    "data.synthetic.max_side=96",
    "data.train_size=64",
    "data.batch_size=2",
    "data.num_workers=0",
]


def compose_cfg(tmp: Path, overrides: list[str], data_root: Path | None = None) -> DictConfig:
    """The composed train config with every output under ``tmp``."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp / "out")
        cfg.paths.root_dir = str(tmp)
        if data_root is not None:
            cfg.data.root = str(data_root)
    return cfg


def tiny(tmp: Path, data_root: Path, *extra: str) -> DictConfig:
    overrides = [
        "experiment=quickstart",
        "data=synthetic",
        "trainer=cpu",
        "trainer.max_epochs=2",
        "trainer.check_val_every_n_epoch=1",
        "callbacks.progress_bar=null",
        *TINY_DATA,
        *extra,
    ]
    return compose_cfg(tmp, overrides, data_root)


def assert_equals_single_process_test(result: dict, single: DictConfig) -> None:
    """A DDP run's test metrics equal one process testing its last checkpoint on ``single``."""
    task = instantiate(single.model)
    task.net.load_state_dict(load_model(result["last_checkpoint"]).state_dict())
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    trainer.test(task, datamodule=instantiate(single.data), verbose=False)
    metrics = {
        f"test/{name}/{key}": value
        for name, values in task.results["test"].items()
        for key, value in values.items()
    }
    assert metrics.keys() == result["after"].keys()
    for key, value in metrics.items():
        assert result["after"][key] == pytest.approx(value, rel=1e-5), key


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic") / "p3m10k"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_instantiates(tmp_path: Path, experiment: str) -> None:
    cfg = compose_cfg(tmp_path, [f"experiment={experiment}"])
    datamodule = instantiate(cfg.data)
    assert datamodule.eval_set_names
    task = instantiate(cfg.model)
    assert task.hparams.strategy in ("resize", "hybrid")
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=False)
    assert trainer.max_epochs >= 1
    if experiment.startswith("ppt_"):
        assert cfg.data.ppt_train == cfg.ppt.train == experiment[4].upper()
        # Every PPT training is tested on every test set; its cells are read from them.
        assert datamodule.eval_set_names == ["P3M-500-P", "P3M-500-NP", "P3M-500-NP-B"]
        assert cfg.model.optimizer.lr == 1e-5 and cfg.data.batch_size == 8
        assert cfg.data.val_split == 0 and cfg.trainer.max_epochs == 150


@pytest.mark.parametrize("experiment", [e for e in EXPERIMENTS if e.startswith("ppt_")])
def test_ppt_experiment_smoke_on_synthetic(tmp_path: Path, data_root: Path, experiment: str):
    cfg = tiny(
        tmp_path, data_root, f"experiment={experiment}", "trainer.max_epochs=1", "from_scratch=true"
    )
    cfg.validate_before = False
    result = train(cfg)
    assert result["ppt_train"] == experiment[4].upper()
    assert result["init"] == "scratch" and "from_scratch" in cfg.tags
    sets = ("P3M-500-P", "P3M-500-NP", "P3M-500-NP-B")
    assert {key.split("/")[1] for key in result["after"]} == set(sets)
    for test_set in sets:
        figures = {
            key.rsplit("/", 1)[1]: value
            for key, value in result["after"].items()
            if key.startswith(f"test/{test_set}/")
        }
        # Every metric of every test set, finite; the face region's where the set has faces.
        assert set(figures) - {"n_images", *METRIC_NAMES} in (set(), set(FACE_METRIC_NAMES))
        assert set(figures) >= {"n_images", *METRIC_NAMES}, test_set
        assert all(math.isfinite(value) for value in figures.values()), figures
        assert figures["n_images"] == cfg.data.synthetic.n_val
    assert "test/P3M-500-P/sad_face" in result["after"]  # its face masks are in the tree
    # Not started through Hydra: the departure the config itself says.
    assert result["departures"] == ["from_scratch=true"] and result["overrides"] is None
    assert result["recipe_fingerprint"] == fingerprint(result["recipe"])


def test_train_writes_checkpoint_metrics_and_learns_something(tmp_path, data_root) -> None:
    cfg = tiny(tmp_path, data_root, "trainer.max_epochs=3", "model.optimizer.lr=1e-3")
    result = train(cfg)
    out = Path(cfg.paths.output_dir)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(result))
    for name in ("P3M-500-P", "P3M-500-NP"):
        # The seeded run learns: the trained model's SAD is below the untrained one's.
        assert saved["after"][f"test/{name}/sad"] < saved["before"][f"test/{name}/sad"], name
        assert f"test/{name}/mse" in saved["after"]
    # No held-out split: no checkpoint was chosen, the headline is the last epoch.
    assert saved["best_checkpoint"] is None and saved["after_best_on_heldout"] is None
    assert saved["precision"] == {"train": "32-true", "eval": "32"}
    assert saved["batch"]["effective"] == saved["batch"]["per_device"] == 2
    assert (out / "config.yaml").is_file()
    assert not load_model(result["last_checkpoint"]).training


def test_an_evaluation_only_run_tests_the_checkpoint_it_names(tmp_path, data_root) -> None:
    cfg = tiny(tmp_path, data_root, "experiment=ppt_b", "train=false", "validate_before=false")
    torch.manual_seed(5)  # not the run's seed: the figures are those of the file's weights
    weights = instantiate(cfg.model).net.state_dict()
    path = tmp_path / "trained_elsewhere.pth"
    torch.save(weights, path)
    with open_dict(cfg):
        cfg.ckpt_path = str(path)
    result = train(cfg)
    assert result["evaluated_checkpoint"] == {"path": str(path), "architecture": "p3m_net"}
    assert result["init"] == f"checkpoint:{path}"
    assert result["headline"] == (
        f"after: test sets, the weights of {path} (evaluated, not trained in this run)"
    )
    assert result["last_checkpoint"] is None and result["before"] == {}
    assert result["departures"] == [f"train=false (evaluates {path})"]
    task = instantiate(cfg.model)
    task.net.load_state_dict(weights)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    expected: dict[str, float] = {}
    for per_set in trainer.test(task, datamodule=instantiate(cfg.data), verbose=False):
        expected.update(per_set)
    assert expected and expected.keys() <= result["after"].keys()
    for key, value in expected.items():
        assert result["after"][key] == pytest.approx(value, rel=1e-6), key


@pytest.mark.slow
def test_same_seed_same_metrics(tmp_path, data_root) -> None:
    first = train(tiny(tmp_path / "a", data_root, "seed=7"))["after"]
    second = train(tiny(tmp_path / "b", data_root, "seed=7"))["after"]
    assert first == second


@pytest.mark.slow
def test_resume_is_exact(tmp_path, data_root) -> None:
    straight = train(tiny(tmp_path / "straight", data_root, "validate_before=false"))
    half = tiny(tmp_path / "half", data_root, "validate_before=false", "trainer.max_epochs=1")
    train(half)
    last = Path(half.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed = train(tiny(tmp_path / "resumed", data_root, f"ckpt_path={last}"))
    a, b = (torch.load(r["last_checkpoint"], weights_only=True) for r in (straight, resumed))
    assert a["global_step"] == b["global_step"] > 0
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][key], msg=key)


@pytest.mark.slow
def test_sigterm_leaves_a_usable_checkpoint(tmp_path, data_root) -> None:
    out = tmp_path / "run"
    command = [
        sys.executable,
        str(REPO / "train.py"),
        f"paths.root_dir={tmp_path}",
        f"hydra.run.dir={out}",
        f"data.root={data_root}",
        "trainer.max_epochs=1000",
        "validate_before=false",
        "callbacks.progress_bar=null",
        *TINY_DATA,
    ]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    metrics = out / "csv" / "metrics.csv"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) > 3:
            break
        time.sleep(1)
    assert process.poll() is None, process.stdout.read().decode()[-3000:]
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    interrupted = out / "checkpoints" / "interrupted.ckpt"
    assert interrupted.is_file(), process.stdout.read().decode()[-3000:]
    assert not load_model(interrupted).training
    raw = torch.load(interrupted, weights_only=True)
    assert raw["global_step"] > 0 and raw["optimizer_states"]


@pytest.mark.slow
def test_ddp_sim_metrics_equal_single_process_evaluation(tmp_path, data_root) -> None:
    # The synthetic data is written once here, not by two DDP processes at the same time.
    train(tiny(tmp_path / "prepare", data_root, "train=false", "test=false"))
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        str(REPO / "train.py"),
        "trainer=ddp_sim",
        f"hydra.run.dir={out}",
        f"paths.root_dir={tmp_path}",
        f"data.root={data_root}",
        "trainer.max_epochs=1",
        "trainer.check_val_every_n_epoch=1",
        "+trainer.limit_train_batches=1",
        "validate_before=false",
        "callbacks.progress_bar=null",
        *TINY_DATA,
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (out / "train_ddp_process_1.log").exists(), "the second DDP process did not run"
    result = json.loads((out / "metrics.json").read_text())
    # The same checkpoint evaluated in one process over the same (odd number of) images.
    single = tiny(tmp_path / "single", data_root)
    assert single.data.synthetic.n_val % 2 == 1, "an odd count catches padding samplers"
    assert_equals_single_process_test(result, single)


@pytest.mark.slow
def test_ppt_sweep_and_report(tmp_path, data_root) -> None:
    train(tiny(tmp_path / "prepare", data_root, "train=false", "test=false"))
    command = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        "experiment=ppt_b,ppt_n",
        "seed=1,2",
        "from_scratch=true",
        "data=synthetic",
        "trainer=cpu",
        "trainer.max_epochs=1",
        f"paths.root_dir={tmp_path}",
        f"data.root={data_root}",
        "validate_before=false",
        "callbacks.progress_bar=null",
        "+trainer.num_sanity_val_steps=0",
        *TINY_DATA,
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sweep,) = (tmp_path / "logs" / "multiruns").iterdir()
    assert len(list(sweep.glob("*/metrics.json"))) == 4
    report = subprocess.run(
        [sys.executable, "-m", "p3m_lightning.report", str(sweep), "--out", str(tmp_path / "t")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    job = json.loads(next(sweep.glob("*/metrics.json")).read_text())
    assert "trainer.max_epochs=1" in job["departures"] and "from_scratch=true" in job["departures"]
    assert "seed=1" in job["overrides"] or "seed=2" in job["overrides"]
    table = (tmp_path / "t" / "table.md").read_text()
    # Both trainings and both seeds of the one recipe in one row of the whole-image table
    # (the face-region table follows it), which says how it departs.
    table2 = table.split("Inside the face mask")[0]
    (row,) = [line for line in table2.splitlines() if line.startswith("| P3M-Net (ResNet-34-mp) [")]
    assert "data=synthetic" in row and "trainer.max_epochs=1" in row and "from_scratch=true" in row
    assert "seed=" not in row and "data.root" not in row
    assert "P3M-Net (paper)" in table and "±" in row


@pytest.mark.slow
def test_ddp_with_fewer_test_images_than_processes(tmp_path, data_root) -> None:
    root = tmp_path / "one_image"
    one = [arg for arg in TINY_DATA if not arg.startswith("data.synthetic.n_val")]
    one.append("data.synthetic.n_val=1")
    prepare = compose_cfg(
        tmp_path / "prepare", ["data=synthetic", "train=false", "test=false", *one], root
    )
    train(prepare)
    checkpoint = tmp_path / "untrained.pth"
    torch.save(instantiate(prepare.model).net.state_dict(), checkpoint)
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        str(REPO / "train.py"),
        "trainer=ddp_sim",
        f"hydra.run.dir={out}",
        f"paths.root_dir={tmp_path}",
        f"data.root={root}",
        "train=false",
        f"ckpt_path={checkpoint}",
        "validate_before=false",
        "callbacks.progress_bar=null",
        *one,
    ]
    # One image on two ranks: rank 1 sees none, and must neither crash nor hang the other.
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "metrics.json").read_text())
    single = compose_cfg(
        tmp_path / "single",
        ["train=false", f"ckpt_path={checkpoint}", "validate_before=false", *one],
        root,
    )
    expected = train(single)["after"]
    assert result["after"].keys() == expected.keys() and expected
    for key, value in expected.items():
        assert result["after"][key] == pytest.approx(value, rel=1e-5), key


@pytest.mark.slow
def test_multirun_jobs_each_run_as_real_ddp(tmp_path, data_root) -> None:
    train(tiny(tmp_path / "prepare", data_root, "train=false", "test=false"))
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        "seed=1,2",
        "trainer=ddp_sim",
        f"hydra.sweep.dir={sweep}",
        f"paths.root_dir={tmp_path}",
        f"data.root={data_root}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "validate_before=false",
        "callbacks.progress_bar=null",
        *TINY_DATA,
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0_quickstart", "1_quickstart"]  # no nested sweeps
    single = tiny(tmp_path / "single", data_root)
    for job in jobs:
        # Each job's second rank ran that job (its own log), not the whole sweep again.
        assert (job / "train_ddp_process_1.log").is_file()
        assert_equals_single_process_test(json.loads((job / "metrics.json").read_text()), single)
    seeds = [json.loads((j / "metrics.json").read_text())["seed"] for j in jobs]
    assert seeds == [1, 2]
