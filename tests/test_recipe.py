"""The recipe guards of train.py (ImageNet init, no quickstart on P3M-10k, float32 evaluation,
evaluation-only runs, the DDP batch rule, model selection on a held-out split only) and the
recipe record, fingerprint and departures of ``p3m_lightning.recipe``."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from p3m_lightning.models.encoders import ResNet34MP
from p3m_lightning.recipe import departures, fingerprint, recipe_record
from p3m_lightning.train import ConfigError, batch_plan, check_recipe, encoder_init, train

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY_DATA = [
    "data.synthetic.n_train=5",
    "data.synthetic.n_val=2",
    "data.synthetic.min_side=64",
    "data.synthetic.max_side=96",
    "data.train_size=64",
    "data.batch_size=2",
    "data.num_workers=0",
    "callbacks.progress_bar=null",
]


def compose_cfg(tmp: Path, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp / "out")
        cfg.paths.root_dir = str(tmp)
    return cfg


def test_quickstart_recipe_on_p3m10k_is_refused(tmp_path: Path) -> None:
    cfg = compose_cfg(tmp_path, ["data=p3m10k", "data.root=/nowhere"])
    with pytest.raises(ConfigError, match="experiment=ppt_b"):
        train(cfg)
    assert not (tmp_path / "out").exists()  # stopped before any work
    assert check_recipe(compose_cfg(tmp_path, [])) == "random"  # `python train.py` stays


def test_the_quickstart_guard_goes_by_the_recipe_not_the_run_name(tmp_path: Path) -> None:
    renamed = compose_cfg(tmp_path, ["data=p3m10k", "data.root=/nowhere", "task_name=mine"])
    assert renamed.model.optimizer.lr == 5e-4 and renamed.trainer.max_epochs == 12
    with pytest.raises(ConfigError, match="quickstart recipe"):
        check_recipe(renamed)
    published = ["experiment=ppt_b", "task_name=quickstart", "model.net.encoder.pretrained=true"]
    assert check_recipe(compose_cfg(tmp_path, published)) == "imagenet:hub"


@pytest.mark.parametrize("precision", ["bf16-true", "16-true", "64-true"])
def test_weights_in_another_precision_than_float32_are_refused_up_front(tmp_path, precision):
    cfg = compose_cfg(tmp_path, [*TINY_DATA, f"trainer.precision={precision}"])
    with pytest.raises(ConfigError, match=f"trainer.precision={precision} .*bf16-mixed"):
        train(cfg)
    assert not (tmp_path / "out").exists()
    assert check_recipe(compose_cfg(tmp_path, ["trainer.precision=bf16-mixed"])) == "random"


def test_an_evaluation_only_run_needs_an_existing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train=false evaluates a trained checkpoint"):
        train(compose_cfg(tmp_path, [*TINY_DATA, "train=false"]))
    missing = tmp_path / "nowhere" / "last.ckpt"
    for run in ("train=false", "train=true"):
        with pytest.raises(ConfigError, match=f"ckpt_path={missing}: no such file"):
            train(compose_cfg(tmp_path, [*TINY_DATA, run, f"ckpt_path={missing}"]))
    assert not (tmp_path / "out").exists()  # stopped before any work
    # Nothing evaluated, nothing to load: a run that only prepares the data.
    assert check_recipe(compose_cfg(tmp_path, ["train=false", "test=false"])) == "random"


def test_ppt_run_without_imagenet_weights_stops_naming_the_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("P3M_IMAGENET_WEIGHTS", raising=False)
    cfg = compose_cfg(tmp_path, ["experiment=ppt_b"])
    with pytest.raises(ConfigError) as err:
        train(cfg)
    message = str(err.value)
    for setting in (
        "model.net.encoder.weights_path=",
        "P3M_IMAGENET_WEIGHTS",
        "model.net.encoder.pretrained=true",
        "from_scratch=true",
    ):
        assert setting in message
    assert check_recipe(compose_cfg(tmp_path, ["experiment=ppt_nn", "from_scratch=true"])) == (
        "scratch"
    )
    assert check_recipe(
        compose_cfg(tmp_path, ["experiment=ppt_b", "model.net.encoder.pretrained=true"])
    ) == ("imagenet:hub")


def test_imagenet_weights_from_the_environment_initialise_the_encoder(tmp_path, monkeypatch):
    torch.manual_seed(3)
    imagenet = ResNet34MP()  # torchvision ResNet-34 names: a stand-in for ImageNet weights
    path = tmp_path / "resnet34.pth"
    torch.save(imagenet.state_dict(), path)
    monkeypatch.setenv("P3M_IMAGENET_WEIGHTS", str(path))
    cfg = compose_cfg(tmp_path, ["experiment=ppt_b"])
    assert check_recipe(cfg) == f"imagenet:{path}"
    task = instantiate(cfg.model)
    for name, value in imagenet.state_dict().items():
        torch.testing.assert_close(task.net.encoder.state_dict()[name], value, msg=name)
    tensors = [k for k in imagenet.state_dict() if not k.endswith("num_batches_tracked")]
    assert encoder_init(cfg, task.net) == (
        f"imagenet:{path} (backbone {len(tensors)}/{len(tensors)} tensors)"
    )


def test_last_checkpoint_is_written_every_epoch_without_validation(tmp_path: Path) -> None:
    cfg = compose_cfg(tmp_path, ["trainer.check_val_every_n_epoch=4"])
    last = instantiate(cfg.callbacks.last_checkpoint)
    trainer = instantiate(cfg.trainer, callbacks=[last], logger=False)
    assert last._should_save_on_train_epoch_end(trainer)


def test_batch_plan_keeps_the_recipe_batch_or_records_the_opt_in() -> None:
    assert batch_plan(8, 1).per_device == 8
    two = batch_plan(8, 2)
    assert (two.per_device, two.effective, two.lr_scale) == (4, 8, 1.0)
    assert batch_plan(8, world_size=2, accumulate=2).per_device == 2
    with pytest.raises(ConfigError, match="batch_size_per_device"):
        batch_plan(8, 3)
    larger = batch_plan(8, world_size=4, per_device=8)
    assert (larger.effective, larger.lr_scale) == (32, 4.0)


def test_ddp_sim_splits_the_recipe_batch_over_its_processes(tmp_path: Path) -> None:
    cfg = compose_cfg(tmp_path, ["trainer=ddp_sim", "data.batch_size=8"])
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.world_size == 2
    plan = batch_plan(cfg.data.batch_size, trainer.world_size, trainer.accumulate_grad_batches)
    assert plan.per_device == 4 and plan.effective == 8
    ddp = compose_cfg(tmp_path, ["trainer=ddp"])
    assert ddp.trainer.sync_batchnorm is True


def test_opting_into_a_larger_batch_scales_and_records_the_learning_rate(tmp_path: Path):
    data_root = tmp_path / "p3m10k"
    cfg = compose_cfg(
        tmp_path,
        [*TINY_DATA, "data.batch_size_per_device=4", "train=false", "test=false"],
    )
    with open_dict(cfg):
        cfg.data.root = str(data_root)
    result = train(cfg)
    assert result["batch"] == {
        "recipe": 2,
        "per_device": 4,
        "world_size": 1,
        "accumulate": 1,
        "effective": 4,
        "lr_scale": 2.0,
    }
    saved = (Path(cfg.paths.output_dir) / "config.yaml").read_text()
    assert "lr: 0.001" in saved  # the quickstart's 5e-4, doubled


@pytest.mark.slow
def test_best_checkpoint_is_chosen_on_the_held_out_split_only(tmp_path: Path) -> None:
    data_root = tmp_path / "p3m10k"
    cfg = compose_cfg(
        tmp_path,
        [
            *TINY_DATA,
            "data.val_split=2",
            "trainer.max_epochs=2",
            "trainer.check_val_every_n_epoch=1",
            "validate_before=false",
        ],
    )
    with open_dict(cfg):
        cfg.data.root = str(data_root)
    result = train(cfg)
    out = Path(cfg.paths.output_dir)
    assert len(result["heldout"]) == 2
    assert result["best_checkpoint"] and Path(result["best_checkpoint"]).is_file()
    for figures in (result["after"], result["after_best_on_heldout"]):
        assert figures["test/P3M-500-P/sad"] > 0 and "test/P3M-500-NP/sad" in figures
    logged = (out / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "val/train-heldout/sad" in logged
    assert "val/P3M-500-P/sad" not in logged  # test sets are never validation sets
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["heldout"] == result["heldout"]


MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
EQUIVALENCES = {"iterations", "epochs", "our choice"}
# A source is an official file and line at a commit, the paper, a maintainer's statement in an
# issue, P3M-Net's transform, or our choice with its reason.
SOURCE = re.compile(
    r"@[0-9a-f]{7}\b|^paper|issue #\d+|^P3M-Net's transform|^our choice: \w|^(epochs|iterations)\b"
)


@pytest.mark.parametrize("model", MODELS)
def test_every_recipe_value_and_the_strategy_carry_a_source(tmp_path: Path, model: str) -> None:
    cfg = compose_cfg(tmp_path, [f"model={model}", "experiment=ppt_b", "data.root=/nowhere"])
    recipe = cfg.recipe
    sources = dict(recipe.sources)
    assert recipe.equivalence in EQUIVALENCES
    wanted = {"optimizer", "batch_size", "equivalence", "transform", "train_size", "loss"}
    wanted |= {"init", "strategy", "checkpoint"}
    if recipe.get("max_steps"):
        # A recipe in steps leaves the epochs open, and the trainer gets the steps.
        assert recipe.max_epochs is None and cfg.trainer.max_epochs is None
        assert cfg.trainer.max_steps == recipe.max_steps
        wanted.add("max_steps")
    else:
        assert cfg.trainer.max_epochs == recipe.max_epochs and cfg.trainer.max_steps == -1
        wanted.add("max_epochs")
    if cfg.model.get("scheduler"):
        wanted.add("scheduler")
    if cfg.model.get("gradient_clipping"):
        wanted.add("gradient_clipping")
    assert wanted <= sources.keys(), wanted - sources.keys()
    assert cfg.data.batch_size == recipe.batch_size
    unsourced = {k: v for k, v in sources.items() if not SOURCE.search(v)}
    assert not unsourced
    # The transform the recipe names is the one the data module gets.
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        named = compose("train", overrides=[f"data/transform={recipe.transform}"])
    assert cfg.data.transform._target_ == named.data.transform._target_


def test_gca_recipe_schedule_matches_the_official_loop(tmp_path: Path) -> None:
    """trainer.py:164-170: lr x (s + 1) / 5000 while warming up, then cosine per step to 0 at
    step 200,000; stepped per optimiser step, with the moving-max clipping."""
    cfg = compose_cfg(tmp_path, ["model=gca", "experiment=ppt_b"])
    assert cfg.model.scheduler_interval == "step"
    assert cfg.model.gradient_clipping._target_.endswith("MovingMaxClipping")
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.model.optimizer.lr)
    scheduler = instantiate(cfg.model.scheduler)(optimizer)
    lr, warmup, total = 4e-4, 5000, 200_000
    checked = {0, 1, 4998, 4999, 5000, 5001, 102_499, 150_000, 199_999}
    rates = {}
    for step in range(total):
        if step in checked:
            rates[step] = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
    for step, rate in rates.items():
        if step < warmup:
            expected = lr * (step + 1) / warmup
        else:
            expected = lr * (1 + math.cos(math.pi * (step - warmup + 1) / (total - warmup))) / 2
        assert rate == pytest.approx(expected, rel=1e-6, abs=1e-12), step
    assert rates[102_499] == pytest.approx(lr / 2, rel=1e-6)


def _docs_page(model: str) -> Path:
    root = CONF.parent / "docs"
    if model.startswith("p3m_vitae") or model.startswith("p3m_swin"):
        return root / "methods" / "p3m_journal.md"
    if model in ("p3m_r34", "p3m_timm"):
        return root / "p3m-net.md"
    return root / "methods" / f"{model.split('_')[0]}.md"


@pytest.mark.parametrize("model", MODELS)
def test_docs_show_every_recipe_source(tmp_path: Path, model: str) -> None:
    """Each source of the recipe appears, verbatim, in the method's docs page (its table)."""
    cfg = compose_cfg(tmp_path, [f"model={model}", "experiment=ppt_b", "data.root=/nowhere"])
    page = _docs_page(model).read_text()
    missing = [key for key, source in cfg.recipe.sources.items() if source not in page]
    assert not missing, f"{_docs_page(model)} lacks the sources of {missing}"


PUBLISHED_B = ["experiment=ppt_b", "model.net.encoder.pretrained=true"]
"""The published recipe of P3M-Net, trained on B."""


@pytest.mark.parametrize(
    "change",
    [
        ["cp=icp"],
        ["cp=fcp"],
        ["model.strategy=hybrid"],
        ["data/transform/augment=photometric"],
        ["data.batch_size_per_device=4"],
        ["trainer=gpu"],
        ["trainer.gradient_clip_val=0.5"],
        ["model.optimizer.lr=1e-4"],
        ["from_scratch=true", "model.net.encoder.pretrained=false"],
    ],
)
def test_a_recipe_change_changes_the_fingerprint_and_is_a_departure(tmp_path, change) -> None:
    base = compose_cfg(tmp_path, PUBLISHED_B)
    changed = compose_cfg(tmp_path, [*PUBLISHED_B, *change])
    assert fingerprint(recipe_record(changed)) != fingerprint(recipe_record(base))
    assert departures(base, PUBLISHED_B) == []
    assert departures(changed, [*PUBLISHED_B, *change]), change


def test_where_data_lives_and_how_the_run_executes_leave_the_recipe_alone(tmp_path) -> None:
    operational = [
        "data.root=/data/P3M-10k",
        "data.num_workers=2",
        "seed=3",
        "task_name=mine",
        "logger=none",
        "trainer.devices=4",
        "trainer=ddp",
        "trainer.precision=32-true",
        "hydra.run.dir=/tmp/run",
        "model.channels_last=true",
        "data.face_detector=haar",
        "data.on_partial=head",
    ]
    base = compose_cfg(tmp_path, PUBLISHED_B)
    same = compose_cfg(tmp_path, [*PUBLISHED_B, *operational])
    assert fingerprint(recipe_record(same)) == fingerprint(recipe_record(base))
    assert departures(same, [*PUBLISHED_B, *operational]) == []
    # Both PPT trainings of one recipe share a fingerprint (the report's columns split them).
    normal = compose_cfg(tmp_path, ["experiment=ppt_n", "model.net.encoder.pretrained=true"])
    assert recipe_record(normal)["ppt_train"] == "N" and recipe_record(base)["ppt_train"] == "B"
    assert fingerprint(recipe_record(normal)) == fingerprint(recipe_record(base))


def test_departures_list_each_change_as_a_setting(tmp_path: Path) -> None:
    overrides = [
        *PUBLISHED_B,
        "data.root=/data",
        "model.strategy=hybrid",
        "+trainer.limit_train_batches=3",
        "data/transform/augment=photometric",
        "cp=icp",
        "trainer=gpu",
        "data=synthetic",
    ]
    assert departures(compose_cfg(tmp_path, overrides), overrides) == [
        "model.strategy=hybrid",
        "trainer.limit_train_batches=3",
        "data/transform/augment=photometric",
        "data=synthetic",
        "cp=icp",
        "trainer.precision=bf16-mixed",
    ]
    evaluate = [*PUBLISHED_B, "train=false", "ckpt_path=/runs/a/last.ckpt"]
    assert departures(compose_cfg(tmp_path, evaluate), evaluate) == [
        "train=false (evaluates /runs/a/last.ckpt)"
    ]


def test_the_record_holds_the_recipe_and_its_sources_verbatim(tmp_path: Path) -> None:
    overrides = ["model=gfm", "experiment=ppt_b", "data.batch_size_per_device=4"]
    cfg = compose_cfg(tmp_path, overrides)
    record = recipe_record(cfg)
    assert record["method"] == "gfm"
    assert record["model"]["optimizer"] == {
        "_target_": "torch.optim.Adam",
        "_partial_": True,
        "lr": 1e-5,
    }
    assert record["model"]["strategy"] == "gfm_hybrid"
    # GFM's 500 AM-2k epochs run as the same 28,500 optimiser steps.
    assert record["trainer"]["max_epochs"] is None and record["trainer"]["max_steps"] == 28500
    assert record["trainer"]["precision"] == "32-true"
    assert record["data"]["batch_size"] == 32 and record["data"]["batch_size_per_device"] == 4
    assert record["data"]["transform"]["_target_"] == cfg.data.transform._target_
    assert record["sources"] == dict(cfg.recipe.sources)
    assert record["sources"]["lr"].startswith("JizhiziLi/GFM scripts/train/train_ori.sh")
    cited = compose_cfg(tmp_path, [*overrides, "recipe.sources.lr='our choice: a test'"])
    assert recipe_record(cited)["sources"]["lr"] == "our choice: a test"
    # Sources document the values: citing them otherwise does not make another recipe.
    assert fingerprint(recipe_record(cited)) == fingerprint(record)
    # Another method is its own recipe (its own row), not a departure from P3M-Net's.
    p3m = compose_cfg(tmp_path, PUBLISHED_B)
    assert fingerprint(recipe_record(p3m)) != fingerprint(record)
    assert departures(compose_cfg(tmp_path, overrides[:2]), overrides[:2]) == []
