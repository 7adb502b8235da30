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

from p3m_lightning.report import COLUMNS, PUBLISHED_NAME, main, write_report

REPO = Path(__file__).resolve().parents[1]
METRIC_NAMES = ("sad", "mse", "mad", "sad_trimap", "mse_trimap", "mad_trimap")
TEST_SETS = ("P3M-500-P", "P3M-500-NP", "P3M-500-NP-B")
R34 = {
    "_target_": "p3m_lightning.models.encoders.ResNet34MP",
    "weights_path": None,
    "pretrained": False,
}
TIMM = {
    "_target_": "p3m_lightning.models.encoders.TimmEncoder",
    "name": "resnet50",
    "pretrained": False,
    "weights_path": None,
    "stem_channels": [32, 64],
    "model_kwargs": {},
}


def fake_metrics(
    train: str | None,
    encoder: dict,
    seed: int,
    rng: np.random.Generator,
    sets: tuple[str, ...] = TEST_SETS,
    init: str = "imagenet:/w/resnet34.pth",
) -> dict:
    """A metrics.json as ``train()`` writes it, with random plausible numbers."""

    def values(p: str) -> dict[str, float]:
        out = {}
        for test_set in sets:
            for name in METRIC_NAMES:
                scale = 0.01 if name.startswith(("mse", "mad")) else 20.0
                out[f"{p}/{test_set}/{name}"] = float(rng.uniform(0.5, 1.5) * scale)
        return out

    return {
        "task_name": f"ppt_{train.lower()}" if train else "quickstart",
        "ppt": {"train": train} if train else None,
        "ppt_train": train or "B",
        "encoder": encoder,
        "init": init,
        "seed": seed,
        "before": values("test"),
        "after": values("test"),
        "after_best_on_heldout": None,
        "best_checkpoint": None,
    }


def write_sweep(root: Path, runs: list[tuple]) -> list[dict]:
    """Hydra-like job folders ``root/<num>/metrics.json``; returns the metrics written."""
    rng = np.random.default_rng(0)
    written = []
    for num, run in enumerate(runs):
        metrics = fake_metrics(*run[:3], rng, *run[3:])
        (root / str(num)).mkdir(parents=True)
        (root / str(num) / "metrics.json").write_text(json.dumps(metrics, indent=2))
        written.append(metrics)
    return written


@pytest.fixture()
def sweep(tmp_path: Path) -> tuple[Path, list[dict]]:
    """3 seeds x the two trainings of ResNet-34-mp, 2 seeds of timm resnet50 trained on B and
    1 on N (tested on P3M-500-P only), a quickstart."""
    root = tmp_path / "multiruns"
    runs: list[tuple] = [(t, R34, s) for s in (1, 2, 3) for t in ("B", "N")]
    runs += [("B", TIMM, s) for s in (1, 2)]
    runs += [("N", TIMM, 1, ("P3M-500-P",)), (None, R34, 42)]
    return root, write_sweep(root, runs)


def expected_cells(written: list[dict]) -> dict[tuple[str, tuple[str, str]], dict]:
    """(model, column) -> metric -> the seeds' values, straight from the written files."""
    names = {"p3m_lightning.models.encoders.ResNet34MP": "P3M-Net (ResNet-34-mp)"}
    names["p3m_lightning.models.encoders.TimmEncoder"] = "P3M-Net (timm resnet50)"
    cells: dict = {}
    for m in written:
        if not m["ppt"]:
            continue
        for column in COLUMNS:
            cell, test_set = column
            if cell[0] != m["ppt"]["train"] or f"test/{test_set}/sad" not in m["after"]:
                continue
            entry = cells.setdefault((names[m["encoder"]["_target_"]], column), {})
            for metric in ("sad", "mse"):
                entry.setdefault(metric, []).append(m["after"][f"test/{test_set}/{metric}"])
    return cells


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_two_trainings_fill_the_four_cells_with_mean_and_std_over_seeds(sweep) -> None:
    root, written = sweep
    report = write_report(root)
    rows = {r["model"]: r for r in read_csv(root / "table.csv")}
    assert set(rows) == {PUBLISHED_NAME, "P3M-Net (ResNet-34-mp)", "P3M-Net (timm resnet50)"}
    cells = expected_cells(written)
    # ResNet-34-mp: all six columns; timm: three B columns, N:B on P3M-500-P only.
    assert len(cells) == 6 + 3 + 1
    for (model, (cell, test_set)), values in cells.items():
        row, key = rows[model], f"{cell}@{test_set}"
        assert int(row[f"{key}_n"]) == len(values["sad"])
        for metric, seeds in values.items():
            assert float(row[f"{key}_{metric}_mean"]) == pytest.approx(np.mean(seeds))
            if len(seeds) >= 2:
                std = np.std(seeds, ddof=1)
                assert float(row[f"{key}_{metric}_std"]) == pytest.approx(std)
            else:
                assert row[f"{key}_{metric}_std"] == ""
    # B:B and B:N of one seed come from the same training, read on two test sets.
    b_run = next(m for m in written if m["ppt"] and m["ppt"]["train"] == "B")
    assert (
        cells[("P3M-Net (ResNet-34-mp)", ("B:N", "P3M-500-NP"))]["sad"][0]
        == (b_run["after"]["test/P3M-500-NP/sad"])
    )
    assert any("no PPT training (task quickstart)" in note for note in report["notes"])


def test_published_figures_sit_only_in_columns_of_their_own_test_set(sweep) -> None:
    root, _ = sweep
    write_report(root)
    published = {r["model"]: r for r in read_csv(root / "table.csv")}[PUBLISHED_NAME]
    assert float(published["B:B@P3M-500-P_sad_mean"]) == 8.73
    assert float(published["N:B@P3M-500-P_mse_mean"]) == 0.004
    # The paper's P3M-500-NP figure for a B-trained P3M-Net; its B:N 9.22 is on another set.
    assert float(published["B:N@P3M-500-NP_sad_mean"]) == 11.23
    assert published["B:N@P3M-500-NP_mse_mean"] == ""
    assert published["N:N@P3M-500-NP_sad_mean"] == ""
    text = (root / "table.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith(f"| {PUBLISHED_NAME}"))
    assert "9.22" not in row and "9.06" not in row  # only in the note above the table
    assert "normal version of P3M-500-P" in text


def test_runs_csv_has_a_row_per_ppt_run(sweep) -> None:
    root, written = sweep
    write_report(root)
    rows = read_csv(root / "runs.csv")
    assert len(rows) == sum(1 for m in written if m["ppt"])
    timm_n = [r for r in rows if r["train"] == "N" and "timm" in r["model"]]
    assert len(timm_n) == 1 and timm_n[0]["P3M-500-NP_sad"] == ""


def test_markdown_names_the_test_set_of_every_column(sweep) -> None:
    root, written = sweep
    write_report(root)
    lines = (root / "table.md").read_text().splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert [c.strip() for c in table[0].split("|")[1:6]] == [
        "Model", "Seeds", "B:B on P3M-500-P SAD", "B:B on P3M-500-P MSE", "B:N on P3M-500-NP SAD",
    ]  # fmt: skip
    published = next(line for line in table if PUBLISHED_NAME in line)
    assert [c.strip() for c in published.split("|")[3:11]] == [
        "8.73", "0.0026", "11.23", "–", "11.22", "0.0040", "–", "–",
    ]  # fmt: skip
    r34 = next(line for line in table if "P3M-Net (ResNet-34-mp)" in line)
    sad = expected_cells(written)[("P3M-Net (ResNet-34-mp)", ("B:B", "P3M-500-P"))]["sad"]
    assert f"{np.mean(sad):.2f} ± {np.std(sad, ddof=1):.2f}" in r34
    assert "| 1, 2, 3 |" in r34
    timm = next(line for line in table if "P3M-Net (timm resnet50)" in line)
    assert "(n=1)" in timm  # its N:B has a single seed: a mean without std


def test_from_scratch_runs_are_named_apart(tmp_path: Path) -> None:
    write_sweep(tmp_path, [("B", R34, 1), ("B", R34, 1, TEST_SETS, "scratch")])
    report = write_report(tmp_path)
    assert sorted(report["table"]) == [
        "P3M-Net (ResNet-34-mp)",
        "P3M-Net (ResNet-34-mp) [from scratch]",
    ]


def test_a_training_run_twice_is_noted(tmp_path: Path) -> None:
    report = write_report(write_sweep_root(tmp_path, [("B", R34, 1), ("B", R34, 1)]))
    assert any("trained on B with seed 1" in note for note in report["notes"])


def write_sweep_root(root: Path, runs: list[tuple]) -> Path:
    write_sweep(root, runs)
    return root


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
    write_sweep(tmp_path, [("B", R34, 1), ("B", pretrained, 1)])
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
    assert {p.name for p in out.iterdir()} == {
        "table.md", "table.csv", "runs.csv", "table.png", "report",
    }  # fmt: skip
    # Fake runs have no checkpoints: the page without a gallery, and a note saying why.
    assert [p.name for p in (out / "report").iterdir()] == ["index.html"]
    assert "Table 2 layout" in (out / "report" / "index.html").read_text()
    assert "none of the 9 runs has config.yaml and checkpoints/last.ckpt" in proc.stderr


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
    write_sweep(tmp_path / "quick", [(None, R34, 42)])
    assert main([str(tmp_path / "quick")]) == 2
    assert "no PPT runs" in capsys.readouterr().err
    assert main([str(tmp_path / "absent")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_face_region_figures_are_reported_where_measured_only(tmp_path: Path) -> None:
    written = write_sweep(tmp_path, [("B", R34, 1), ("B", R34, 2)])
    for num, metrics in enumerate(written):
        metrics["after"]["test/P3M-500-P/sad_face"] = 0.5 + num
        metrics["after"]["test/P3M-500-P/mse_face"] = 0.01
        (tmp_path / str(num) / "metrics.json").write_text(json.dumps(metrics))
    write_report(tmp_path)
    text = (tmp_path / "table.md").read_text()
    face = text.split("Inside the face mask")[1]
    assert "B:B on P3M-500-P SAD_FACE" in face and "1.00 ± 0.71" in face
    assert "P3M-500-NP SAD_FACE" not in face  # no face masks there: absent, not zero
    rows = read_csv(tmp_path / "runs.csv")
    assert [r["P3M-500-P_sad_face"] for r in rows] == ["0.5", "1.5"]
    assert all(r["P3M-500-NP_sad_face"] == "" for r in rows)


def _row_names(markdown: str) -> list[str]:
    return [line.split(" | ")[0][2:] for line in markdown.splitlines() if line.startswith("| ")]


def test_methods_get_their_rows_and_trimap_based_runs_their_own_table(tmp_path: Path) -> None:
    """A row per method with its paper row; trimap-taking runs (a Table 1 method, a staged
    SHM M-Net) in the unknown-region table; a method the report does not know is listed."""
    rng = np.random.default_rng(7)
    runs = {
        "gfm": ("gfm", ["image"]),
        "gca": ("gca", ["image", "trimap"]),
        "shm_mnet": ("shm_mnet", ["image", "trimap"]),
        "tiny": ("tiny", ["image"]),
    }
    for folder, (method, inputs) in runs.items():
        for train in ("B", "N"):
            metrics = fake_metrics(train, {}, 1, rng)
            metrics.update({"method": method, "inputs": inputs})
            path = tmp_path / f"{folder}_{train}" / "metrics.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(metrics))
    report = write_report(tmp_path)
    whole, _, table1 = report["markdown"].partition("## Trimap-based methods")
    assert {"GFM (paper)", "GFM", "tiny", PUBLISHED_NAME} <= set(_row_names(whole))
    assert "GCA" not in _row_names(whole) and "shm_mnet" not in _row_names(whole)
    assert {"GCA (paper)", "GCA", "shm_mnet"} <= set(_row_names(table1))
    # The Table 1 columns are the unknown-region figures of the runs.
    gca_b = json.loads((tmp_path / "gca_B" / "metrics.json").read_text())["after"]
    line = next(x for x in table1.splitlines() if x.startswith("| GCA |"))
    assert f"{gca_b['test/P3M-500-P/sad_trimap']:.2f}" == line.split(" | ")[2]
    assert (tmp_path / "table1.csv").is_file()


def test_runs_of_another_recipe_get_their_own_row_that_says_how(tmp_path: Path) -> None:
    """Copy-paste, another strategy or batch must not be averaged into the published row."""
    recipes = {
        "published": ("a1b2c3d4e5f6", []),
        "icp": ("0f0f0f0f0f0f", ["cp=icp"]),
        "hybrid": ("123456789abc", ["model.strategy=hybrid", "data.batch_size_per_device=4"]),
    }
    runs = [("published", 1), ("published", 2), ("icp", 1), ("icp", 2), ("hybrid", 1)]
    written = write_sweep(tmp_path, [("B", R34, seed) for _, seed in runs])
    for num, ((recipe, _), metrics) in enumerate(zip(runs, written, strict=True)):
        metrics["recipe_fingerprint"], metrics["departures"] = recipes[recipe]
        (tmp_path / str(num) / "metrics.json").write_text(json.dumps(metrics))
    report = write_report(tmp_path)
    name = "P3M-Net (ResNet-34-mp)"
    rows = {
        "published": name,
        "icp": f"{name} [cp=icp]",
        "hybrid": f"{name} [model.strategy=hybrid; data.batch_size_per_device=4]",
    }
    assert sorted(report["table"]) == sorted(rows.values())
    column = ("B:B", "P3M-500-P")
    for recipe, row in rows.items():
        sads = [
            m["after"]["test/P3M-500-P/sad"]
            for (r, _), m in zip(runs, written, strict=True)
            if r == recipe
        ]
        cell = report["table"][row][column]
        assert cell.n == len(sads) and cell.sad_mean == pytest.approx(np.mean(sads), rel=1e-12)
    assert f"| {rows['icp']} | 1, 2 |" in report["markdown"]


def test_recipes_that_read_alike_are_told_apart_by_fingerprint(tmp_path: Path) -> None:
    written = write_sweep(tmp_path, [("B", R34, 1), ("B", R34, 1)])
    for num, (metrics, fp) in enumerate(
        zip(written, ("aaaaaaaaaaaa", "bbbbbbbbbbbb"), strict=True)
    ):
        metrics["recipe_fingerprint"], metrics["departures"] = fp, []
        (tmp_path / str(num) / "metrics.json").write_text(json.dumps(metrics))
    assert sorted(write_report(tmp_path)["table"]) == [
        "P3M-Net (ResNet-34-mp) (recipe aaaaaaaaaaaa)",
        "P3M-Net (ResNet-34-mp) (recipe bbbbbbbbbbbb)",
    ]
