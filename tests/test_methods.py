"""Every method of the benchmark trains, tests, evaluates and predicts through the entry points.

Each ``model=<method>`` config runs the PPT B-training recipe (``experiment=ppt_b``) on a tiny
synthetic P3M-10k at reduced widths, one epoch; its checkpoint is then rebuilt from the file
alone and scored again by ``eval.py``'s ``evaluate``, which must give the training run's own
test figures to the last bit (one evaluation path: strategy, trimaps, plates, precision).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from p3m_lightning.evaluate import evaluate
from p3m_lightning.models.checkpoint import load_checkpoint
from p3m_lightning.train import train

CONF = Path(__file__).resolve().parents[1] / "conf"
SETS = ("P3M-500-P", "P3M-500-NP", "P3M-500-NP-B")
DATA = [
    "data=synthetic",
    "data.synthetic.n_train=4",
    "data.synthetic.n_val=2",
    "data.synthetic.min_side=96",
    "data.synthetic.max_side=136",
    "data.train_size=64",
    "data.batch_size=2",
    "data.max_eval_images=1",
]
# Reduced widths: the architecture of each method, small enough for a CPU test.
METHODS: dict[str, tuple[str, list[str], str | dict]] = {
    # model config: (registered architecture, overrides, default strategy)
    "p3m_timm": (
        "p3m_net",
        ["model.net.encoder.name=resnet18", "model.net.encoder.stem_channels=[16,32]"],
        "resize",
    ),
    "p3m_swin_t": (
        "p3m_journal",
        [
            "+model.net.backbone_config.embed_dim=8",
            "+model.net.backbone_config.depths=[2,2,2,2]",
            "+model.net.backbone_config.heads=[1,1,2,2]",
        ],
        {"name": "hybrid", "quantize": "floor"},
    ),
    "p3m_vitae_s": (
        "p3m_journal",
        [
            "+model.net.backbone_config.token_dims=[8,16,32,64]",
            "+model.net.backbone_config.depths=[1,1,1,1]",
            "+model.net.backbone_config.heads=[1,2,2,4]",
            "+model.net.backbone_config.groups=[1,2,4,8]",
        ],
        {"name": "hybrid", "quantize": "floor"},
    ),
    "gfm": ("gfm", ["model.net.width=8"], "gfm_hybrid"),
    "modnet": ("modnet", ["model.net.hr_channels=8", "model.net.width_mult=0.25"], "modnet"),
    "shm": ("shm", ["model.net.psp_width=16", "model.net.mnet_width_mult=0.125"], "resize"),
    "lf": (
        "lf",
        [
            "model.net.growth_rate=4",
            "model.net.block_config=[1,1,1,1]",
            "model.net.num_init_features=8",
            "model.net.decoder_widths=[8,8,8,8,8]",
            "model.net.fusion_width=8",
        ],
        "resize",
    ),
    "hatt": (
        "hatt",
        [
            "model.net.layers=[1,1,1,1]",
            "model.net.groups=2",
            "model.net.width_per_group=4",
            "model.net.aspp_width=8",
            "model.net.low_width=8",
            "model.net.decoder_width=8",
            "model.discriminator.width=8",
        ],
        "resize",
    ),
    "basic": (
        "basic",
        ["model.net.ngf=8", "model.net.n_blocks1=2", "model.net.n_blocks2=1"],
        "basic",
    ),
    # mmagic's DIM rounds its 8-bit matte; the generic strategy with that quantisation.
    "dim": (
        "dim",
        ["model.net.width=8", "model.net.refiner_channels=8"],
        {"name": "trimap_guided", "quantize": "round"},
    ),
    "alphagan": (
        "alphagan",
        ["model.net.width=8", "model.net.aspp_width=8", "model.discriminator.width=8"],
        "trimap_guided",
    ),
    # GCA, IndexNet and FBA: their official test procedures (methods/<method>/inference.py).
    "gca": (
        "gca",
        ["model.net.encoder_layers=[1,1,1,1]", "model.net.decoder_layers=[1,1,1,1]"],
        "gca",
    ),
    "indexnet": ("indexnet", [], "indexnet"),
    "fba": ("fba", [], "fba"),
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("methods") / "synthetic"


@pytest.fixture(autouse=True)
def no_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("P3M_IMAGENET_WEIGHTS", raising=False)


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_method_trains_evaluates_and_reloads(
    tmp_path: Path, data_root: Path, method: str, compose_train
) -> None:
    architecture, overrides, strategy = METHODS[method]
    cfg = compose_train(
        tmp_path,
        [
            f"model={method}",
            "experiment=ppt_b",
            "trainer=cpu",
            "trainer.max_epochs=1",
            "from_scratch=true",
            "validate_before=false",
            "logger=none",
            "callbacks.progress_bar=null",
            f"data.root={data_root}",
            *DATA,
            *overrides,
        ],
    )
    result = train(cfg)
    out = Path(cfg.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == (method if method not in ("p3m_timm",) else "p3m_net")
    assert metrics["init"] == "scratch"
    assert metrics["test_trimaps"] == dict.fromkeys(SETS, "files")
    for name in SETS:
        for key in ("sad", "mse", "sad_trimap", "mse_trimap"):
            value = result["after"][f"test/{name}/{key}"]
            assert np.isfinite(value) and value >= 0.0

    loaded = load_checkpoint(out / "checkpoints" / "last.ckpt")
    assert loaded.architecture == architecture
    assert loaded.strategy == strategy
    assert not loaded.net.training

    # eval.py on the checkpoint alone: the same figures as the run's own test.
    eval_cfg = OmegaConf.create(
        {
            "ckpt_path": str(out / "checkpoints" / "last.ckpt"),
            "architecture": None,
            "architecture_config": None,
            "strategy": None,
            "max_side": 1600,
            "save_predictions": False,
            "device": "cpu",
            "precision": "32",
            "data": OmegaConf.to_container(cfg.data, resolve=True),
            "paths": {"output_dir": str(tmp_path / "eval")},
        }
    )
    summary = evaluate(eval_cfg)
    assert summary["architecture"] == architecture
    assert summary["strategy"] == strategy
    # One evaluation path: every figure equal to the last bit, the image counts too.
    for name in SETS:
        for key, value in summary["sets"][name].items():
            assert value == result["after"][f"test/{name}/{key}"], (name, key)
    assert (tmp_path / "eval" / "per_image.csv").read_text() == (out / "per_image.csv").read_text()


def test_every_method_config_is_tested() -> None:
    configs = {p.stem for p in (CONF / "model").glob("*.yaml")}
    # p3m_r34: the default, every other test trains it; the stages: the staged-recipe test.
    stages = {"shm_tnet", "shm_mnet", "dim_stage1", "dim_stage2", "lf_stage1", "lf_stage2"}
    assert configs - set(METHODS) == {"p3m_r34", *stages}


def test_trimap_based_alpha_follows_the_trimap(tmp_path: Path) -> None:
    """A trimap-based checkpoint through Matter: 0 / 1 where the trimap says so."""
    from p3m_lightning.api import Matter
    from p3m_lightning.methods.dim.network import DIMNet
    from p3m_lightning.models.checkpoint import architecture_record

    net = DIMNet(width=8, refiner_channels=8).eval()
    path = tmp_path / "dim.ckpt"
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
            "architecture": architecture_record(net),
        },
        path,
    )
    matter = Matter(path)
    assert matter.needs_trimap and matter.strategy.name == "trimap_guided"
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    trimap = np.full((50, 70), 128, np.uint8)
    trimap[:10] = 0
    trimap[-10:] = 255
    with pytest.raises(ValueError, match="needs a trimap"):
        matter.predict(photo)
    with pytest.raises(ValueError, match="the photo 70x50"):
        matter.predict(photo, trimap=trimap[:40])
    alpha = matter.predict(photo, trimap=trimap)
    assert alpha.shape == (50, 70)
    assert (alpha[:10] == 0).all() and (alpha[-10:] == 1).all()
    unknown = alpha[10:-10]
    assert ((unknown > 0) & (unknown < 1)).any()


def test_a_method_recipe_without_imagenet_weights_stops(tmp_path: Path, compose_train) -> None:
    from p3m_lightning.train import ConfigError, check_recipe

    cfg = compose_train(tmp_path, ["model=gfm", "experiment=ppt_b", "data.root=/nowhere"])
    with pytest.raises(ConfigError, match=r"model.net.pretrained_path=.*conf/model/gfm.yaml"):
        check_recipe(cfg)
    cfg = compose_train(
        tmp_path, ["model=gfm", "experiment=ppt_b", "model.net.pretrained_path=/w/r34.pth"]
    )
    assert check_recipe(cfg) == "imagenet:/w/r34.pth"
    # The method's recipe reaches the trainer and the data: GFM's batch 32 and its 500 AM-2k
    # epochs as the same 28,500 optimiser steps, its own transform at 320.
    assert (cfg.data.batch_size, cfg.trainer.max_epochs, cfg.trainer.max_steps) == (32, None, 28500)
    assert cfg.data.transform._target_.endswith("GFMTrainTransform") and cfg.data.train_size == 320


def _state(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith(f"net.{prefix}")}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stages", "frozen", "overrides"),
    [
        # SHM: T-Net, then M-Net on the true trimap, then both, started from the two.
        (
            [("shm_tnet", []), ("shm_mnet", []), ("shm", [(0, "tnet."), (1, "mnet.")])],
            {},
            METHODS["shm"][1],
        ),
        # DIM: encoder-decoder, then the refiner on the frozen encoder-decoder, then all.
        (
            [("dim_stage1", []), ("dim_stage2", [(0, "backbone.")]), ("dim", [(1, "")])],
            {1: "backbone."},
            METHODS["dim"][1],
        ),
        # LF: segmentation, then the fusion network on the frozen rest, then all.
        (
            [("lf_stage1", []), ("lf_stage2", [(0, "")]), ("lf", [(1, "")])],
            {1: "encoder."},
            METHODS["lf"][1],
        ),
    ],
    ids=["shm", "dim", "lf"],
)
def test_staged_recipes_start_each_part_from_the_stage_before(
    tmp_path: Path, data_root: Path, compose_train, stages, frozen, overrides
) -> None:
    from hydra.utils import instantiate

    checkpoints: list[Path] = []
    for i, (config, sources) in enumerate(stages):
        items = ", ".join(
            f"{{checkpoint: '{checkpoints[j]}', prefix: '{prefix}'}}" for j, prefix in sources
        )
        cfg = compose_train(
            tmp_path / config,
            [
                f"model={config}",
                "experiment=ppt_b",
                "trainer=cpu",
                "trainer.max_epochs=1",
                "from_scratch=true",
                "validate_before=false",
                "logger=none",
                "callbacks.progress_bar=null",
                f"data.root={data_root}",
                *DATA,
                *overrides,
                *([f"model.init_from=[{items}]"] if sources else []),
            ],
        )
        # The task starts each named part exactly from its stage's checkpoint.
        own = {f"net.{k}": v for k, v in instantiate(cfg.model).net.state_dict().items()}
        for j, prefix in sources:
            start = _state(checkpoints[j], prefix)
            assert start and all(torch.equal(own[k], v) for k, v in start.items()), prefix
        result = train(cfg)
        assert result["init"].startswith("stages:" if sources else "scratch")
        checkpoints.append(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
        if i in frozen:
            # A frozen part leaves the stage as it came in, BatchNorm statistics included,
            # while the rest trained.
            source = checkpoints[sources[0][0]]
            assert _same(_state(checkpoints[i], frozen[i]), _state(source, frozen[i]))
            assert not _same(_state(checkpoints[i], ""), _state(source, ""))


def test_frozen_parts_are_not_optimised_and_stay_in_eval_mode() -> None:
    from p3m_lightning.methods.shm.network import SHMNet
    from p3m_lightning.task import MattingTask

    net = SHMNet(psp_width=16, mnet_width_mult=0.125, stage="tnet")
    task = MattingTask(net, freeze=["mnet."])
    optimised = {
        id(p) for g in task.configure_optimizers()["optimizer"].param_groups for p in g["params"]
    }
    assert optimised == {id(p) for p in net.tnet.parameters()}
    # From the start (Lightning may never call train() before the first step) and after.
    assert not any(m.training for m in net.mnet.modules())
    task.train()
    assert not any(m.training for m in net.mnet.modules())
    assert all(m.training for m in net.tnet.modules())
    with pytest.raises(ValueError, match="no parameters under 'decoder.'"):
        MattingTask(SHMNet(psp_width=16, mnet_width_mult=0.125), freeze=["decoder."])


@pytest.mark.slow
def test_adversarial_training_runs_under_ddp(tmp_path: Path, data_root: Path, compose_train):
    """AlphaGAN's two alternating optimisers in a real 2-process gloo DDP run."""
    import subprocess
    import sys

    # The synthetic data is written once here, not by two processes at the same time.
    prepare = [f"data.root={data_root}", *DATA, "train=false", "test=false", "logger=none"]
    train(compose_train(tmp_path / "prepare", prepare))
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        str(CONF.parent / "train.py"),
        "model=alphagan",
        "experiment=ppt_b",
        "trainer=ddp_sim",
        "trainer.max_epochs=1",
        "from_scratch=true",
        "validate_before=false",
        "logger=none",
        "callbacks.progress_bar=null",
        f"hydra.run.dir={out}",
        f"paths.root_dir={tmp_path}",
        f"data.root={data_root}",
        *DATA,
        *METHODS["alphagan"][1],
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (out / "train_ddp_process_1.log").exists(), "the second DDP process did not run"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["batch"]["world_size"] == 2 and metrics["batch"]["per_device"] == 1
    assert np.isfinite(metrics["after"]["test/P3M-500-P/sad_trimap"])
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] >= 4  # two optimiser steps per batch, two batches per rank
