"""Every option of every config group composes and instantiates, so that none can rot."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from p3m_lightning.data.synthetic_faces import generate_faces
from p3m_lightning.train import train

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("trainer", "callbacks", "logger", "data", "model", "debug", "experiment", "cp", "paths")
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
# GPU and DDP options instantiate on this CPU-only machine with accelerator=cpu.
ON_CPU = {
    "gpu": ["trainer.accelerator=cpu"],
    "ddp": ["trainer.accelerator=cpu", "trainer.devices=2"],
}
TINY = [
    "data.synthetic.n_train=4",
    "data.synthetic.n_val=1",
    "data.synthetic.min_side=64",
    "data.synthetic.max_side=96",
    "data.train_size=64",
    "data.batch_size=2",
    "callbacks.progress_bar=null",
]


def _compose(tmp: Path, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp / "out")
        cfg.paths.root_dir = str(tmp)
    return cfg


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No W&B account or state, public faces for P3M-CP, no ImageNet weights."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "P3M_IMAGENET_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("P3M_CP_SOURCE", str(generate_faces(tmp_path / "faces", n=2, size=64)))


def test_every_group_is_covered() -> None:
    found = {p.name for p in CONF.iterdir() if p.is_dir()}
    assert found - set(GROUPS) == {"hydra", "local"}  # Hydra's own settings; machine overrides


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_instantiates(tmp_path: Path, group: str, option: str) -> None:
    overrides = [f"{group}={option}", *ON_CPU.get(option if group == "trainer" else "", [])]
    cfg = _compose(tmp_path, overrides)
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, pl.LightningDataModule)
    task = instantiate(cfg.model)
    assert isinstance(task, pl.LightningModule)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    assert isinstance(trainer, pl.Trainer)
    if group == "logger" and option == "none":
        assert loggers == [] and trainer.loggers == []


@pytest.mark.parametrize(
    ("overrides", "detector"), [([], "mtcnn"), (["privacy.detector=haar"], "haar")]
)
def test_privacy_detector_reaches_the_data_and_the_panels(
    tmp_path: Path, overrides: list[str], detector: str
) -> None:
    cfg = _compose(tmp_path, overrides)
    assert instantiate(cfg.data).obfuscator.detector == detector
    assert instantiate(cfg.callbacks.image_panels).face_detector == detector
    wrong = _compose(tmp_path, ["privacy.detector=yolo"])
    with pytest.raises(InstantiationException, match="detector must be one of"):
        instantiate(wrong.data)
    with pytest.raises(InstantiationException, match="face_detector must be one of"):
        instantiate(wrong.callbacks.image_panels)


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [["logger=none"], ["debug=fdr"], ["debug=overfit"]])
def test_runs_end_to_end(tmp_path: Path, overrides: list[str]) -> None:
    extra = ["trainer.max_epochs=2"] if overrides == ["debug=overfit"] else []
    cfg = _compose(tmp_path, [*overrides, *TINY, "trainer.max_epochs=1", *extra])
    with open_dict(cfg):
        cfg.data.root = str(tmp_path / "p3m10k")
    result = train(cfg)
    assert result["after"]["test/P3M-500-P/sad"] > 0
    if overrides == ["logger=none"]:
        assert not (Path(cfg.paths.output_dir) / "csv").exists()
