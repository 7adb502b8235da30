"""``python -m p3m_lightning.report`` on fake but realistic sweeps of ``train.py``."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from p3m_lightning.report import PUBLISHED_NAME, main, write_report

REPO = Path(__file__).resolve().parents[1]
METRIC_NAMES = ("sad", "mse", "mad", "sad_trimap", "mse_trimap", "mad_trimap")
EXPERIMENTS = {
    "ppt_bb": ("B:B", "P3M-500-P", "B"),
    "ppt_bn": ("B:N", "P3M-500-NP", "B"),
    "ppt_nb": ("N:B", "P3M-500-P", "N"),
    "ppt_nn": ("N:N", "P3M-500-NP", "N"),
}
R34 = {"_target_": "p3m_lightning.models.ResNet34MP", "weights_path": None, "pretrained": False}
TIMM = {
    "_target_": "p3m_lightning.models.TimmEncoder",
    "name": "resnet50",
    "pretrained": False,
    "weights_path": None,
    "stem_channels": [32, 64],
    "model_kwargs": {},
}


def fake_metrics(
    experiment: str | None, encoder: dict, seed: int, rng: np.random.Generator, prefix: str
) -> dict:
    """A metrics.json as ``train()`` writes it, with random plausible numbers."""

    def values(p: str) -> dict[str, float]:
        out = {}
        for test_set in ("P3M-500-P", "P3M-500-NP"):
            for name in METRIC_NAMES:
                scale = 0.01 if name.startswith(("mse", "mad")) else 20.0
                out[f"{p}/{test_set}/{name}"] = float(rng.uniform(0.5, 1.5) * scale)
        return out

    setting, headline, train = EXPERIMENTS.get(experiment, (None, None, "B"))
    return {
        "task_name": experiment or "quickstart",
        "ppt": {"setting": setting, "headline_test_set": headline} if experiment else None,
        "ppt_train": train,
        "encoder": encoder,
        "seed": seed,
        "before": values("val"),
        "after": values(prefix),
        "best_checkpoint": f"/somewhere/{experiment}/checkpoints/epoch_001.ckpt",
    }


def write_sweep(root: Path, runs: list[tuple[str | None, dict, int, str]]) -> list[dict]:
    """Hydra-like job folders ``root/<num>/metrics.json``; returns the metrics written."""
    rng = np.random.default_rng(0)
    written = []
    for num, (experiment, encoder, seed, prefix) in enumerate(runs):
        metrics = fake_metrics(experiment, encoder, seed, rng, prefix)
        (root / str(num)).mkdir(parents=True)
        (root / str(num) / "metrics.json").write_text(json.dumps(metrics, indent=2))
        written.append(metrics)
    return written


@pytest.fixture()
def sweep(tmp_path: Path) -> tuple[Path, list[dict]]:
    """3 seeds x 4 settings of ResNet-34-mp (one sweep folder), 2 seeds of timm resnet50 in a
    nested second sweep (its N:N with a single seed, tested only: val/ metrics), a quickstart."""
    root = tmp_path / "multiruns"
    runs = [(e, R34, s, "test") for s in (1, 2, 3) for e in EXPERIMENTS]
    runs += [(e, TIMM, s, "test") for s in (1, 2) for e in ("ppt_bb", "ppt_bn", "ppt_nb")]
    runs += [("ppt_nn", TIMM, 1, "val"), (None, R34, 42, "test")]
    return root, write_sweep(root, runs)


def expected_cells(written: list[dict]) -> dict[tuple[str, str], dict[str, list[float]]]:
    """(model, setting) -> metric -> the seeds' values, straight from the written files."""
    names = {"p3m_lightning.models.ResNet34MP": "P3M-Net (ResNet-34-mp)"}
    names["p3m_lightning.models.TimmEncoder"] = "P3M-Net (timm resnet50)"
    cells: dict[tuple[str, str], dict[str, list[float]]] = {}
    for m in written:
        if not m["ppt"]:
            continue
        after, head = m["after"], m["ppt"]["headline_test_set"]
        prefix = "test" if f"test/{head}/sad" in after else "val"
        cell = cells.setdefault((names[m["encoder"]["_target_"]], m["ppt"]["setting"]), {})
        for metric in ("sad", "mse"):
            cell.setdefault(metric, []).append(after[f"{prefix}/{head}/{metric}"])
    return cells


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_table_csv_holds_mean_and_std_over_seeds(sweep) -> None:
    root, written = sweep
    report = write_report(root)
    rows = {r["model"]: r for r in read_csv(root / "table.csv")}
    assert set(rows) == {PUBLISHED_NAME, "P3M-Net (ResNet-34-mp)", "P3M-Net (timm resnet50)"}
    cells = expected_cells(written)
    assert len(cells) == 8
    for (model, setting), values in cells.items():
        row = rows[model]
        assert int(row[f"{setting}_n"]) == len(values["sad"])
        for metric, seeds in values.items():
            assert float(row[f"{setting}_{metric}_mean"]) == pytest.approx(np.mean(seeds))
            if len(seeds) >= 2:
                std = np.std(seeds, ddof=1)
                assert float(row[f"{setting}_{metric}_std"]) == pytest.approx(std)
            else:
                assert row[f"{setting}_{metric}_std"] == ""
    published = rows[PUBLISHED_NAME]
    assert float(published["B:B_sad_mean"]) == 8.73 and float(published["N:B_mse_mean"]) == 0.004
    assert any("no PPT setting (task quickstart)" in note for note in report["notes"])


def test_runs_csv_has_a_row_per_ppt_run(sweep) -> None:
    root, written = sweep
    write_report(root)
    rows = read_csv(root / "runs.csv")
    assert len(rows) == sum(1 for m in written if m["ppt"])
    val_rows = [r for r in rows if r["source"] == "val"]
    assert [(r["setting"], r["seed"], r["test_set"]) for r in val_rows] == [
        ("N:N", "1", "P3M-500-NP")
    ]


def test_markdown_has_the_published_row_and_every_model(sweep) -> None:
    root, written = sweep
    write_report(root)
    lines = (root / "table.md").read_text().splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert table[0].split("|")[1:4] == [" Model ", " Seeds ", " B:B SAD "]
    published = next(line for line in table if PUBLISHED_NAME in line)
    assert [c.strip() for c in published.split("|")[3:-1]] == [
        "8.73", "0.0026", "9.22", "0.0028", "11.22", "0.0040", "9.06", "0.0028",
    ]  # fmt: skip
    r34 = next(line for line in table if "P3M-Net (ResNet-34-mp)" in line)
    sad = expected_cells(written)[("P3M-Net (ResNet-34-mp)", "B:B")]["sad"]
    assert f"{np.mean(sad):.2f} ± {np.std(sad, ddof=1):.2f}" in r34
    assert "| 1, 2, 3 |" in r34
    timm = next(line for line in table if "P3M-Net (timm resnet50)" in line)
    assert "(n=1)" in timm  # its N:N has a single seed: a mean without std


def test_png_is_a_valid_image(sweep) -> None:
    root, _ = sweep
    write_report(root)
    data = (root / "table.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(root / "table.png") as image:
        image.verify()
    with Image.open(root / "table.png") as image:
        assert image.width > 400 and image.height > 300


def test_encoders_of_one_class_are_kept_apart(tmp_path: Path) -> None:
    pretrained = {**R34, "pretrained": True}
    write_sweep(tmp_path, [("ppt_bb", R34, 1, "test"), ("ppt_bb", pretrained, 1, "test")])
    report = write_report(tmp_path)
    assert sorted(report["table"]) == [
        "P3M-Net (ResNet-34-mp) [pretrained=false]",
        "P3M-Net (ResNet-34-mp) [pretrained=true]",
    ]


def test_cli_writes_into_out(sweep, tmp_path: Path) -> None:
    root, _ = sweep
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "p3m_lightning.report", str(root), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert PUBLISHED_NAME in proc.stdout
    assert "skipped" in proc.stderr and "quickstart" in proc.stderr
    assert {p.name for p in out.iterdir()} == {"table.md", "table.csv", "runs.csv", "table.png"}


def test_cli_empty_folder_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "p3m_lightning.report", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "no metrics.json under" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_only_quickstart_runs_and_missing_folder_exit_2(tmp_path: Path, capsys) -> None:
    write_sweep(tmp_path / "quick", [(None, R34, 42, "test")])
    assert main([str(tmp_path / "quick")]) == 2
    assert "no PPT runs" in capsys.readouterr().err
    assert main([str(tmp_path / "absent")]) == 2
    assert "no such folder" in capsys.readouterr().err
