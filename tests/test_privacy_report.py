"""A run's privacy report: counts by mask, detector and fallback, for training and evaluation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from p3m_lightning.train import train

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_b_training_on_normal_portraits_and_the_blurred_twin_are_reported(tmp_path: Path):
    data_root = tmp_path / "p3m10k"
    overrides = [
        "data=synthetic",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "trainer.check_val_every_n_epoch=1",
        "callbacks.progress_bar=null",
        "data.synthetic.n_train=4",
        "data.synthetic.n_val=2",
        "data.synthetic.min_side=64",
        "data.synthetic.max_side=96",
        "data.train_size=64",
        "data.batch_size=2",
        "data.eval_sets=[P3M-500-P,P3M-500-NP-B]",
        f"data.normal_train_dir={data_root}",
        "validate_before=false",
        "privacy.use_detector=false",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "out")
        cfg.paths.root_dir = str(tmp_path)
        cfg.data.root = str(data_root)
    train(cfg)
    out = Path(cfg.paths.output_dir)
    report = json.loads((out / "privacy_report.json").read_text())
    assert report["policy"]["on_no_face"] == "person"
    sets = report["sets"]
    # The training portraits have face masks; P3M-500-NP has none, so without the detector
    # every twin image falls back to obfuscating the whole person.
    assert sets["train"]["counts"] == {"mask": 4} and sets["train"]["fallback"] == []
    assert sets["P3M-500-NP-B"]["counts"] == {"person": 2}
    assert len(sets["P3M-500-NP-B"]["fallback"]) == 2
    assert "P3M-500-P" not in sets  # stored blurred: nothing obfuscated on the fly
    # Panels: P3M-500-P by its face masks, the twin by the region it was obfuscated in.
    assert sets["panels"]["counts"] == {"mask": 4}
    with (out / "csv" / "metrics.csv").open() as handle:
        columns = next(csv.reader(handle))
    assert "privacy/P3M-500-NP-B/person" in columns and "privacy/train/mask" in columns
