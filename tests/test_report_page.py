"""``python -m p3m_lightning.report`` on a sweep with checkpoints: the comparison gallery and the
self-contained HTML page, checked in a real headless browser where one is installed."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from p3m_lightning.api import Matter
from p3m_lightning.data.p3m10k import read_mask, read_rgb
from p3m_lightning.data.synthetic import generate
from p3m_lightning.imageio import alpha_to_uint8
from p3m_lightning.panels import gray_to_rgb
from p3m_lightning.report import COLUMNS, main, write_report
from p3m_lightning.report_gallery import GAP, LETTERBOX, TILE, fit_tile, tile_origin, write_gallery
from p3m_lightning.report_html import BANNER_COLOR, BANNER_HEIGHT
from p3m_lightning.train import train
from tests.report_sweeps import SYNTHETIC, data_config, tiny_dim, tiny_gfm, write_run

SETS = ("P3M-500-P", "P3M-500-NP")
CELLS = {"B:B": "P3M-500-P", "B:N": "P3M-500-NP", "N:B": "P3M-500-P", "N:N": "P3M-500-NP"}
RECIPE = {"name": "dim", "sources": ["DIM paper §4", "mmagic dim config"]}
DEPARTURES = ["batch 2 (our choice: a CPU test)"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _names(root: Path, test_set: str) -> list[str]:
    folder = root / "validation" / test_set / "mask"
    return sorted(p.stem for p in folder.glob("*.png"))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """GFM and DIM (untrained, tiny), each trained on B and N, tested on P3M-500-P and -NP;
    the report written with ``--hardest 1``."""
    tmp = tmp_path_factory.mktemp("page")
    data_root = generate(tmp / "synthetic", **SYNTHETIC)
    data = data_config(data_root, SETS)
    # Per-image SADs: GFM alone would call the second image of each set the hardest; the mean
    # over the sweep's runs (GFM and DIM) calls it the first.
    per_run = {"gfm": (5.0, 20.0, 10.0), "dim": (30.0, 1.0, 10.0)}
    hardest = {s: _names(data_root, s)[0] for s in SETS}
    root = tmp / "sweep"
    for method, net in (("gfm", tiny_gfm()), ("dim", tiny_dim())):
        for training in ("B", "N"):
            per_image = {
                (s, name): sad
                for s in SETS
                for name, sad in zip(_names(data_root, s), per_run[method], strict=True)
            }
            cited = (method, training) == ("dim", "B")
            recipe, departures = (RECIPE, DEPARTURES) if cited else (None, None)
            folder = root / f"{method}_{training}"
            write_run(
                folder, net, method, training, data, per_image, recipe=recipe, departures=departures
            )
    assert main([str(root), "--hardest", "1"]) == 0
    return {"root": root, "data_root": data_root, "hardest": hardest}


def _tile(png: np.ndarray, row: int, column: int) -> np.ndarray:
    x, y = tile_origin(row, column)
    return png[y : y + TILE, x : x + TILE]


def test_gallery_has_a_png_per_cell_with_every_method(sweep) -> None:
    gallery = sweep["root"] / "report" / "gallery"
    assert sorted(p.name for p in gallery.iterdir()) == [
        "B-B_P3M-500-P.png",
        "B-N_P3M-500-NP.png",
        "N-B_P3M-500-P.png",
        "N-N_P3M-500-NP.png",
    ]
    for path in gallery.iterdir():
        png = np.asarray(Image.open(path).convert("RGB"))
        # One row (--hardest 1); image, true alpha, then matte and error of GFM and DIM.
        assert png.shape == (tile_origin(1, 0)[1], GAP + 6 * (TILE + GAP), 3)


def test_gallery_rows_are_the_hardest_by_mean_sad_and_mattes_are_the_checkpoints(sweep) -> None:
    root, data_root = sweep["root"], sweep["data_root"]
    name = sweep["hardest"]["P3M-500-P"]
    png = np.asarray(Image.open(root / "report/gallery/B-B_P3M-500-P.png").convert("RGB"))
    folder = data_root / "validation" / "P3M-500-P"
    alpha = read_mask(folder / "mask" / f"{name}.png")
    np.testing.assert_array_equal(_tile(png, 0, 1), fit_tile(gray_to_rgb(alpha)))
    # The matte columns hold each checkpoint's prediction of the image, here recomputed
    # through the Python API with the evaluation's resampling (another path to the same
    # strategy; its default "fast" resampling is for photos): DIM (column 2) sorts first.
    photo = read_rgb(folder / "blurred_image" / f"{name}.jpg")
    trimap = read_mask(folder / "trimap" / f"{name}.png")
    for column, run in ((2, "dim_B"), (4, "gfm_B")):
        matter = Matter(root / run / "checkpoints" / "last.ckpt", resampling="official")
        pred = matter.predict(photo, trimap=trimap)
        expected = fit_tile(gray_to_rgb(alpha_to_uint8(pred))).astype(int)
        assert np.abs(_tile(png, 0, column).astype(int) - expected).max() <= 1, run
        # The error map is black where the matte is exact and bright where it is far off.
        error = np.abs(pred - alpha / 255.0)
        tile = _tile(png, 0, column + 1).astype(int).sum(axis=2)
        small = fit_tile(gray_to_rgb(alpha_to_uint8(error)))[..., 0]
        inside = np.all(_tile(png, 0, column) != LETTERBOX, axis=2)
        assert tile[inside & (small < 5)].mean() < tile[inside & (small > 128)].mean()


def _external_references(page: str) -> list[str]:
    """``src``/``href``/CSS ``url()`` targets that would be fetched from elsewhere."""
    targets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page)
    targets += re.findall(r"url\(\s*['\"]?([^'\")]*)", page)
    return [t for t in targets if not t.startswith(("data:", "#")) and "://" in t]


def test_page_is_self_contained_with_both_tables_and_the_recipes(sweep) -> None:
    root = sweep["root"]
    page_path = root / "report" / "index.html"
    page = page_path.read_text()
    assert _external_references(page) == []
    assert "http://" not in page and "https://" not in page
    assert "@import" not in page and "<script" not in page
    images = re.findall(r'<img src="([^"]+)"', page)
    files = [src for src in images if not src.startswith("data:")]
    assert sorted(files) == sorted(f"gallery/{p.name}" for p in (root / "report/gallery").iterdir())
    assert all((page_path.parent / src).is_file() for src in files)
    assert sum(src.startswith("data:image/png;base64,") for src in images) == 1  # table.png
    assert "Table 2 layout" in page and "Table 1 layout" in page
    tables = re.findall(r"<table>.*?</table>", page, flags=re.S)
    whole = next(t for t in tables if "B:B on P3M-500-P SAD" in t)
    assert "<td>GFM [from scratch]</td>" in whole and "DIM [from scratch]" not in whole
    metrics = json.loads((root / "gfm_B" / "metrics.json").read_text())["after"]
    assert f'<td class="num">{metrics["test/P3M-500-P/sad"]:.2f}</td>' in whole
    unknown = next(t for t in tables if "unknown-region SAD" in t)
    assert "<td>DIM [from scratch]</td>" in unknown
    provenance = next(t for t in tables if "<th>Departures</th>" in t)
    rows = {
        re.findall(r"<td>([^<]*)</td>", row)[3]: re.findall(r"<td>([^<]*)</td>", row)
        for row in re.findall(r"<tr><td>.*?</tr>", provenance)
    }
    assert sorted(rows) == ["dim_B", "dim_N", "gfm_B", "gfm_N"]
    assert rows["dim_B"][4:] == [
        "P3M-500-NP, P3M-500-P",
        "unknown region (trimap)",
        "name: dim",
        "DIM paper §4; mmagic dim config",
        "batch 2 (our choice: a CPU test)",
    ]
    assert rows["gfm_N"][5:] == ["whole image", "not recorded", "not recorded", "not recorded"]


def _browser() -> str | None:
    return next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)


@pytest.mark.skipif(
    _browser() is None,
    reason="no headless browser: install Chromium (apt-get install chromium) to render the page",
)
def test_page_renders_in_a_headless_browser(sweep, tmp_path: Path) -> None:
    page = sweep["root"] / "report" / "index.html"
    shot = tmp_path / "page.png"
    width, height = 1280, 3000
    proc = subprocess.run(
        [
            str(_browser()),
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            f"--window-size={width},{height}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape == (height, width, 3)
    assert pixels.std() > 30  # not a blank page
    # The banner: its colour across the top, right of the title text.
    banner = np.array([int(BANNER_COLOR[i : i + 2], 16) for i in (1, 3, 5)])
    assert (np.abs(pixels[5 : BANNER_HEIGHT - 5, 900:1270] - banner).max(axis=2) <= 2).all()
    below = pixels[BANNER_HEIGHT + 5 :]
    assert (np.abs(below - banner).max(axis=2) <= 2).mean() < 0.01
    # The tables: dark text in the band right under the first heading and paragraph.
    band = pixels[BANNER_HEIGHT + 100 : BANNER_HEIGHT + 300, :1200]
    assert (band.max(axis=2) < 100).mean() > 0.01
    # The chart (inlined): matplotlib's first and second bar colours.
    for color in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(pixels - color).max(axis=2) <= 3).sum() > 2000, color
    # The gallery PNGs (files next to the page): the tiles' letterbox colour, which nothing
    # else on the page uses; present only if the browser loaded them.
    assert (np.abs(pixels - LETTERBOX).max(axis=2) <= 2).sum() > 5000


@pytest.mark.slow
def test_gallery_mattes_score_what_the_trained_runs_recorded(tmp_path: Path, compose_train) -> None:
    """Two tiny trainings (B and N): each matte in the gallery is the one the run's own test
    scored, its SAD and MSE equal to the run's per_image.csv to the bit."""
    sweep = tmp_path / "sweep"
    for experiment in ("ppt_b", "ppt_n"):
        cfg = compose_train(
            sweep / experiment,
            [
                "model=gfm",
                "model.net.width=8",
                f"experiment={experiment}",
                "data=synthetic",
                f"data.root={tmp_path / 'synthetic'}",
                *(f"data.synthetic.{k}={v}" for k, v in SYNTHETIC.items()),
                "data.eval_sets=[P3M-500-P,P3M-500-NP]",
                "data.train_size=64",
                "data.batch_size=2",
                "trainer=cpu",
                "trainer.max_epochs=1",
                "from_scratch=true",
                "validate_before=false",
                "logger=none",
                "callbacks.progress_bar=null",
            ],
        )
        train(cfg)
    report = write_report(sweep)
    gallery = write_gallery(sweep, report["runs"], tmp_path / "gallery", COLUMNS, hardest=2)
    assert sorted((f.cell, f.test_set) for f in gallery.figures) == sorted(CELLS.items())
    for figure in gallery.figures:
        folder = sweep / f"ppt_{figure.cell[0].lower()}" / "out"
        with (folder / "per_image.csv").open(newline="") as handle:
            recorded = {
                row["name"]: row for row in csv.DictReader(handle) if row["set"] == figure.test_set
            }
        hardest = sorted(recorded, key=lambda n: (-float(recorded[n]["sad"]), n))[:2]
        assert list(figure.images) == hardest
        ((method,),) = {figure.methods}
        for name in figure.images:
            scores = figure.scores[(method, name)]
            assert repr(scores["sad"]) == recorded[name]["sad"]
            assert repr(scores["mse"]) == recorded[name]["mse"]
