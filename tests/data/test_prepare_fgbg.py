"""F/B estimation: outputs, quality of the composite, resuming, failures, surviving a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from p3m_lightning.data.prepare_fgbg import main, prepare_fgbg


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    assert cv2.imwrite(str(path), data)


def _read(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def make_train_split(root: Path, count: int, side: int) -> dict[str, np.ndarray]:
    """``count`` composites of smooth F over smooth B with a soft disk matte; returns alphas."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    alphas = {}
    for i in range(count):
        distance = np.hypot(y - 0.5, x - 0.45 - 0.01 * i) - 0.3
        alpha = np.clip(0.5 - distance * side / 6, 0, 1)
        fg = np.stack([200 - 60 * y, 90 + 50 * x, 40 + 30 * y], axis=-1)
        bg = np.stack([30 + 40 * x, 120 - 50 * y, 210 - 60 * x], axis=-1)
        image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
        stem = f"s_{i:03d}"
        _write(root / "train" / "blurred_image" / f"{stem}.png", np.rint(image).astype(np.uint8))
        alphas[stem] = np.rint(alpha * 255).astype(np.uint8)
        _write(root / "train" / "mask" / f"{stem}.png", alphas[stem])
    return alphas


def _outputs(root: Path) -> list[Path]:
    return sorted(p for folder in ("fg", "bg") for p in (root / "train" / folder).iterdir())


def test_writes_fg_and_bg_that_recompose_the_image(tmp_path: Path) -> None:
    alphas = make_train_split(tmp_path, count=3, side=48)
    result = prepare_fgbg(tmp_path, workers=1, progress=False)
    assert result == {"done": ["s_000", "s_001", "s_002"], "skipped": [], "failed": {}}
    for stem, alpha_u8 in alphas.items():
        fg = _read(tmp_path / "train" / "fg" / f"{stem}.png").astype(np.float32)
        bg = _read(tmp_path / "train" / "bg" / f"{stem}.png").astype(np.float32)
        image = _read(tmp_path / "train" / "blurred_image" / f"{stem}.png").astype(np.float32)
        assert fg.shape == bg.shape == (48, 48, 3)
        alpha = (alpha_u8.astype(np.float32) / 255)[..., None]
        error = np.abs(alpha * fg + (1 - alpha) * bg - image)
        assert error[alpha_u8 == 255].max() <= 1.0
        assert error[alpha_u8 == 0].max() <= 1.0
        soft = (alpha_u8 > 0) & (alpha_u8 < 255)
        assert soft.any() and error[soft].mean() < 3.0


def test_resumes_and_rewrites_only_what_is_missing(tmp_path: Path, capsys) -> None:
    make_train_split(tmp_path, count=3, side=48)
    prepare_fgbg(tmp_path, workers=1, progress=False)
    (tmp_path / "train" / "fg" / "s_001.png").unlink()
    kept = {p: p.stat().st_mtime_ns for p in _outputs(tmp_path) if p.stem != "s_001"}
    time.sleep(0.01)

    assert main([str(tmp_path), "--workers", "1"]) == 0
    assert "1 done, 2 skipped (already complete), 0 failed" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert (tmp_path / "train" / "fg" / "s_001.png").is_file()
    assert prepare_fgbg(tmp_path, workers=1, progress=False)["skipped"] == [
        "s_000",
        "s_001",
        "s_002",
    ]


def test_failures_are_named_and_set_the_exit_status(tmp_path: Path, capsys) -> None:
    make_train_split(tmp_path, count=3, side=48)
    (tmp_path / "train" / "mask" / "s_000.png").unlink()
    bad = tmp_path / "train" / "blurred_image" / "s_001.png"
    bad.write_bytes(b"not a png")
    assert main([str(tmp_path), "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert "1 done, 0 skipped (already complete), 2 failed" in captured.out
    assert f"{tmp_path / 'train' / 'blurred_image' / 's_000.png'}: no matching file" in (
        captured.err
    )
    assert f"{bad}: DatasetError" in captured.err
    assert [p.name for p in _outputs(tmp_path)] == ["s_002.png", "s_002.png"]


def test_missing_folders_exit_with_the_error(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path)]) == 2
    assert "missing folder" in capsys.readouterr().err


@pytest.mark.slow
def test_a_killed_run_leaves_only_whole_files_and_the_rerun_finishes(tmp_path: Path) -> None:
    count, side = 40, 240
    make_train_split(tmp_path, count=count, side=side)
    fg_folder, bg_folder = tmp_path / "train" / "fg", tmp_path / "train" / "bg"
    command = [sys.executable, "-m", "p3m_lightning.data.prepare_fgbg", str(tmp_path)]
    process = subprocess.Popen(
        [*command, "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes the workers too
    )
    try:
        deadline = time.monotonic() + 120
        # B is written after F: the first B marks the first finished sample.
        while not any(p.suffix == ".png" for p in bg_folder.glob("*")):
            assert process.poll() is None, "the run ended before writing anything"
            assert time.monotonic() < deadline, "no output within two minutes"
            time.sleep(0.005)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    outputs = [p for p in _outputs(tmp_path) if not p.name.startswith(".")]
    assert 0 < len(outputs) < 2 * count, "the kill came too late to test anything"
    for path in outputs:
        with Image.open(path) as image:
            image.load()
            assert image.size == (side, side)
    (fg_folder / ".s_000.png.99999.tmp").write_bytes(b"stale partial file")

    result = prepare_fgbg(tmp_path, workers=1, progress=False)
    assert result["failed"] == {}
    assert sorted(result["done"] + result["skipped"]) == [f"s_{i:03d}" for i in range(count)]
    assert result["skipped"], "finished samples of the killed run were redone"
    files = _outputs(tmp_path)
    assert not [p for p in files if p.name.startswith(".")]
    assert len(files) == 2 * count
    for path in files:
        with Image.open(path) as image:
            image.load()
