"""``eval.py`` / ``evaluate(cfg)`` on a tiny synthetic P3M-10k with a random-weights model."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from p3m_lightning.evaluate import METRIC_TITLES, EvaluationError, evaluate, format_table, run
from p3m_lightning.metrics import METRIC_NAMES
from p3m_lightning.models.checkpoint import load_model
from p3m_lightning.task import MattingTask

REPO = Path(__file__).resolve().parents[1]
N_VAL = 3
SETS = ("P3M-500-P", "P3M-500-NP")


def tiny_data(data_root: Path) -> list[str]:
    """Overrides for a synthetic P3M-10k of a few small images at ``data_root``."""
    return [
        "data.synthetic.n_train=2",
        f"data.synthetic.n_val={N_VAL}",
        "data.synthetic.min_side=64",
        "data.synthetic.max_side=96",
        f"data.root={data_root}",
    ]


def compose_eval(tmp: Path, data: list[str], ckpt: Path, *extra: str) -> DictConfig:
    """The composed eval config with the ``data`` overrides, every output under ``tmp``."""
    overrides = [
        *data,
        "data.num_workers=0",
        f"paths.root_dir={tmp}",
        # ${hydra:runtime.output_dir} resolves only inside a Hydra run.
        f"paths.output_dir={tmp / 'out'}",
        f"ckpt_path={ckpt}",
        *extra,
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("eval", overrides=overrides)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data") / "syn"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory, ckpt: Path, data_root: Path):
    """One evaluation with predictions: (config, returned summary, output folder)."""
    tmp = tmp_path_factory.mktemp("eval")
    cfg = compose_eval(tmp, tiny_data(data_root), ckpt, "save_predictions=true")
    summary = evaluate(cfg)
    return cfg, summary, Path(cfg.paths.output_dir)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_per_image_csv_has_a_row_per_image(evaluated) -> None:
    _, _, out = evaluated
    rows = read_rows(out / "per_image.csv")
    assert list(rows[0]) == ["set", "name", *METRIC_NAMES, "sad_face", "mse_face", "mad_face"]
    for name in SETS:
        names = [r["name"] for r in rows if r["set"] == name]
        assert len(names) == len(set(names)) == N_VAL
    for row in rows:
        assert all(float(row[m]) >= 0 for m in METRIC_NAMES)
        # P3M-500-P ships face masks, P3M-500-NP none: face figures absent, not zero.
        if row["set"] == "P3M-500-P":
            assert 0 <= float(row["sad_face"]) <= float(row["sad"])
        else:
            assert row["sad_face"] == ""


def test_summary_is_the_mean_of_the_csv_rows(evaluated) -> None:
    cfg, summary, out = evaluated
    saved = json.loads((out / "summary.json").read_text())
    assert saved == summary
    assert saved["strategy"] == "resize" and saved["ckpt_path"] == cfg.ckpt_path
    assert list(saved["sets"]) == list(SETS)
    rows = read_rows(out / "per_image.csv")
    for name in SETS:
        values = [r for r in rows if r["set"] == name]
        assert saved["sets"][name]["n_images"] == N_VAL
        for metric in METRIC_NAMES:
            mean = sum(float(r[metric]) for r in values) / len(values)
            assert saved["sets"][name][metric] == pytest.approx(mean, rel=1e-12)


def test_summary_matches_the_task_test_logging(evaluated, ckpt: Path) -> None:
    """eval.py and ``trainer.test`` of the matting task give the same numbers."""
    cfg, summary, _ = evaluated
    task = MattingTask(net=load_model(ckpt))
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    logged = trainer.test(task, datamodule=instantiate(cfg.data), verbose=False)[0]
    for name in SETS:
        for metric in METRIC_NAMES:
            expected = logged[f"test/{name}/{metric}"]
            assert summary["sets"][name][metric] == pytest.approx(expected, rel=1e-5)
    expected = logged["test/P3M-500-P/sad_face"]
    assert summary["sets"]["P3M-500-P"]["sad_face"] == pytest.approx(expected, rel=1e-5)
    assert "test/P3M-500-NP/sad_face" not in logged
    assert "sad_face" not in summary["sets"]["P3M-500-NP"]


def test_eval_py_and_the_task_leave_out_the_same_skipped_images(evaluated, ckpt, tmp_path):
    """A set obfuscated on the fly whose face region cannot be established for one image
    (an empty face mask, no detector, ``on_no_face=skip``): neither path scores that image."""
    cfg, _, _ = evaluated  # the synthetic data exists
    source = Path(cfg.data.root) / "validation" / "P3M-500-P"
    copy = tmp_path / "P3M-500-P-clear"
    for folder in ("original_image", "mask", "trimap", "facemask"):
        shutil.copytree(source / folder, copy / folder)
    blank = sorted((copy / "facemask").iterdir())[0]
    cv2.imwrite(str(blank), np.zeros_like(cv2.imread(str(blank), cv2.IMREAD_GRAYSCALE)))
    spec = f"{{name:P-skip,root:'{copy}',image_dir:original_image,obfuscate:true}}"
    skipping = compose_eval(
        tmp_path,
        tiny_data(Path(cfg.data.root)),
        ckpt,
        f"data.eval_sets=[{spec}]",
        "data.on_no_face=skip",
        "data.use_detector=false",
    )
    summary = evaluate(skipping)
    assert summary["sets"]["P-skip"]["n_images"] == N_VAL - 1
    rows = read_rows(Path(skipping.paths.output_dir) / "per_image.csv")
    assert blank.stem not in {r["name"] for r in rows} and len(rows) == N_VAL - 1
    task = MattingTask(net=load_model(ckpt))
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    logged = trainer.test(task, datamodule=instantiate(skipping.data), verbose=False)[0]
    assert sorted(r["name"] for r in task.per_image) == sorted(r["name"] for r in rows)
    for metric in METRIC_NAMES:
        expected = logged[f"test/P-skip/{metric}"]
        assert summary["sets"]["P-skip"][metric] == pytest.approx(expected, rel=1e-5), metric


def test_predictions_are_8bit_mattes_of_the_image_size(evaluated, data_root: Path) -> None:
    _, _, out = evaluated
    for name, folder in (("P3M-500-P", "P3M-500-P"), ("P3M-500-NP", "P3M-500-NP")):
        written = sorted((out / "predictions" / name).iterdir())
        assert len(written) == N_VAL
        for path in written:
            assert not path.name.startswith(".")  # no temporary file left behind
            matte = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            mask = cv2.imread(str(data_root / "validation" / folder / "mask" / path.name), 0)
            assert matte.dtype.name == "uint8" and matte.shape == mask.shape


def test_format_table_has_every_metric_and_set(evaluated) -> None:
    _, summary, _ = evaluated
    table = format_table(summary["sets"])
    lines = table.splitlines()
    assert len(lines) == 1 + len(SETS)
    for title in ("SAD", "MSE", "MAD", "Grad", "Conn", "SAD-trimap", "SAD-fg", "SAD-bg"):
        assert title in lines[0].split()


def test_bf16_precision_runs(tmp_path: Path, data_root: Path, ckpt: Path) -> None:
    cfg = compose_eval(
        tmp_path, tiny_data(data_root), ckpt, "precision=bf16", "data.max_eval_images=1"
    )
    summary = evaluate(cfg)
    assert summary["precision"] == "bf16"
    assert [s["n_images"] for s in summary["sets"].values()] == [1, 1]
    assert all(s["sad"] >= 0 for s in summary["sets"].values())


def test_metric_titles_follow_metric_names() -> None:
    assert tuple(METRIC_TITLES) == METRIC_NAMES


def test_missing_ckpt_is_a_one_line_error(tmp_path: Path, data_root: Path, capsys):
    cfg = compose_eval(tmp_path, tiny_data(data_root), tmp_path / "missing.pth")
    assert run(cfg) == 2
    assert "missing.pth" in capsys.readouterr().err
    cfg = compose_eval(tmp_path, tiny_data(data_root), tmp_path / "missing.pth", "ckpt_path=null")
    with pytest.raises(EvaluationError, match="ckpt_path is required"):
        evaluate(cfg)


def test_bad_options_are_reported(tmp_path: Path, data_root: Path, ckpt: Path) -> None:
    for override, message in (
        ("strategy=tiles", "unknown strategy"),
        ("strategy={name: resize, resampling: cubic}", "resampling must be one of"),
        ("precision=16", "unknown precision"),
    ):
        cfg = compose_eval(tmp_path, tiny_data(data_root), ckpt, override)
        with pytest.raises(EvaluationError, match=message):
            evaluate(cfg)


def test_missing_dataset_explains_where_to_get_it(tmp_path: Path, ckpt: Path, capsys) -> None:
    cfg = compose_eval(tmp_path, ["data=p3m10k", f"data.root={tmp_path / 'nowhere'}"], ckpt)
    assert run(cfg) == 2
    err = capsys.readouterr().err
    assert "P3M-10k is not at" in err and "github.com/JizhiziLi/P3M" in err
    assert "Traceback" not in err


def test_eval_py_missing_ckpt_exits_2_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "eval.py",
            f"ckpt_path={tmp_path / 'nope.pth'}",
            f"paths.root_dir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "nope.pth" in proc.stderr and "no such file" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.slow
def test_eval_py_runs_as_a_command(tmp_path: Path, ckpt: Path, data_root: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "eval.py",
            f"ckpt_path={ckpt}",
            *tiny_data(data_root),
            f"paths.root_dir={tmp_path}",
            "strategy=hybrid",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "logs" / "eval" / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["strategy"] == "hybrid"
    assert [s["n_images"] for s in summary["sets"].values()] == [N_VAL, N_VAL]
    assert len(read_rows(run_dir / "per_image.csv")) == 2 * N_VAL
    assert "SAD-trimap" in proc.stdout
