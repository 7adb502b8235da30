"""The GPU benchmark's CPU dry run: every code path, a bare image's imports, its JSON and table."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from p3m_lightning.bench.gpu import METHODS, require

ABSENT_ON_GPU_IMAGE = ("hydra", "omegaconf", "albumentations", "wandb", "pymatting")

# Runs the benchmark with the packages the GPU image lacks made unimportable.
BARE_IMAGE = f"""
import sys
from importlib.abc import MetaPathFinder

class Absent(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT_ON_GPU_IMAGE!r}:
            raise ImportError(f"{{name}} is not on this image")
        return None

sys.meta_path.insert(0, Absent())
from p3m_lightning.bench.__main__ import main
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_cpu_dry_run_measures_every_part_without_hydra(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-c", BARE_IMAGE, "gpu", "--out", str(out), "--steps", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "CUDA is absent" in done.stdout
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["gpu_count"] == 0
    assert report["torch"] and report["settings"]["size"] == 64
    names = [row["name"] for row in report["rows"]]
    for method in METHODS:
        for mode in ("fp32", "bf16-mixed", "bf16-mixed+channels-last"):
            assert f"{method} {mode}" in names
        assert any(
            f"{method} bf16-mixed+channels-last+compile: skipped" in n for n in report["notes"]
        )
    assert any(row["part"] == "ddp" and "gloo x1" in row["name"] for row in report["rows"])
    assert "P3M-Net torch fp32 64x64" in names and "P3M-Net torch bf16 64x64" in names
    onnx_row = "P3M-Net onnxruntime CPU fp32 64x64" in names
    assert onnx_row or any("onnxruntime" in note for note in report["notes"])
    for row in report["rows"]:
        assert math.isfinite(row["images_per_s"]) and row["images_per_s"] > 0, row
        assert row["peak_mem_gib"] is None
        assert f"| {row['part']} | {row['name']} |" in done.stdout


def test_missing_package_is_named_or_tried_from_the_wheel_folder(tmp_path: Path) -> None:
    notes: list[str] = []
    assert require("p3m_no_such_module", None, notes, "prediction onnxruntime") is None
    assert "p3m_no_such_module is not installed" in notes[0] and "--wheels DIR" in notes[0]
    assert require("p3m_no_such_module", tmp_path, notes, "prediction onnxruntime") is None
    assert f"did not install from {tmp_path}" in notes[1]
    assert require("json", None, notes, "x") is json
