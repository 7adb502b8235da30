"""A run's privacy report: counts by mask, detector and fallback, for training and evaluation,
in privacy_report.json, in metrics.json and beside the run's row of the benchmark report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from p3m_lightning.data.synthetic import generate
from p3m_lightning.report import write_report
from p3m_lightning.train import train

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_b_training_on_normal_portraits_and_the_blurred_twin_are_reported(tmp_path: Path):
    data_root = tmp_path / "p3m10k"
    generate(data_root, n_train=4, n_val=2, min_side=64, max_side=96)
    # A blank face mask is no proof of "no face": that portrait must be obfuscated otherwise.
    blank = data_root / "train" / "facemask" / "p_000000.png"
    cv2.imwrite(str(blank), np.zeros_like(cv2.imread(str(blank), cv2.IMREAD_GRAYSCALE)))
    overrides = [
        "experiment=ppt_b",
        "from_scratch=true",
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
    # The training portraits have face masks but one blank; P3M-500-NP has none, so without
    # the detector every twin image falls back to obfuscating the whole person.
    assert sets["train"]["counts"] == {"mask": 3, "person": 1}
    assert sets["train"]["fallback"] == ["p_000000"]
    assert sets["P3M-500-NP-B"]["counts"] == {"person": 2}
    assert len(sets["P3M-500-NP-B"]["fallback"]) == 2
    assert "P3M-500-P" not in sets  # stored blurred: nothing obfuscated on the fly
    assert report["copy_paste"] is None
    # Panels: P3M-500-P by its face masks, the twin by the region it was obfuscated in.
    assert sets["panels"]["counts"] == {"mask": 4}
    with (out / "csv" / "metrics.csv").open() as handle:
        columns = next(csv.reader(handle))
    assert "privacy/P3M-500-NP-B/person" in columns and "privacy/train/mask" in columns

    privacy = json.loads((out / "metrics.json").read_text())["privacy"]
    assert privacy["policy"]["on_partial"] == "person"
    zero = {"mask": 0, "detector": 0, "person": 0, "head": 0, "skipped": 0}
    assert privacy["sets"] == {
        "train": {**zero, "images": 4, "mask": 3, "person": 1},
        "P3M-500-NP-B": {**zero, "images": 2, "person": 2},
    }
    table = write_report(out, tmp_path / "report")["markdown"]
    assert (
        "P3M-500-NP-B: 2 images, 2 by the person fallback; "
        "train: 4 images, 3 by face mask, 1 by the person fallback"
    ) in table
    with (tmp_path / "report" / "runs.csv").open() as handle:
        (row,) = csv.DictReader(handle)
    assert row["privacy"].startswith("P3M-500-NP-B: 2 images")
