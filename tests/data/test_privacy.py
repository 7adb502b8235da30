"""Face detection, obfuscation and the privacy audit, on a real face (skimage's astronaut)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from p3m_lightning.data import face_detection
from p3m_lightning.data.audit import audit_split
from p3m_lightning.data.privacy import (
    METHODS,
    detect_faces,
    face_mask_from_boxes,
    obfuscate_faces,
)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    image = skimage.data.astronaut()
    image.flags.writeable = False  # any in-place change by the code under test would raise
    return image


@pytest.fixture(scope="module")
def small_astronaut(astronaut: np.ndarray) -> np.ndarray:
    """A 384 px copy (face ~70 px wide), to keep the audit tests quick."""
    return cv2.resize(astronaut, (384, 384), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def astronaut_faces(astronaut: np.ndarray) -> list[tuple[int, int, int, int]]:
    return detect_faces(astronaut)


def _write_rgb(path: Path, image: np.ndarray) -> None:
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def test_detects_the_astronaut_face(astronaut_faces: list[tuple[int, int, int, int]]) -> None:
    assert len(astronaut_faces) == 1
    x, y, w, h = astronaut_faces[0]
    # Her face is centred near (225, 115) in the 512 x 512 image and about 90 px wide.
    assert abs(x + w / 2 - 225) < 25 and abs(y + h / 2 - 115) < 25
    assert 60 < w < 140


def test_detection_on_a_downscaled_copy_reports_full_size_boxes(astronaut: np.ndarray) -> None:
    (x, y, w, h), *_ = detect_faces(astronaut, max_side=256)
    assert abs(x + w / 2 - 225) < 25 and abs(y + h / 2 - 115) < 25
    assert 60 < w < 140


@pytest.mark.parametrize("method", METHODS)
def test_detector_path_hides_the_face(astronaut: np.ndarray, method: str) -> None:
    out = obfuscate_faces(astronaut, method=method)
    assert out.dtype == np.uint8 and out.shape == astronaut.shape
    assert not np.array_equal(out, astronaut)
    assert detect_faces(out) == []


@pytest.mark.parametrize("method", METHODS)
def test_explicit_mask_changes_only_masked_pixels(
    astronaut: np.ndarray, astronaut_faces: list[tuple[int, int, int, int]], method: str
) -> None:
    # Two separate regions (the face, the flag's stars): each is obfuscated at its own scale,
    # and nothing leaks outside.
    mask = face_mask_from_boxes(astronaut.shape, [*astronaut_faces, (10, 10, 60, 40)])
    out = obfuscate_faces(astronaut, mask, method=method)
    changed = (out != astronaut).any(axis=-1)
    assert not changed[mask == 0].any()
    assert changed[mask > 0].mean() > 0.9


def test_blur_strength_scales_with_the_face(astronaut: np.ndarray) -> None:
    mask = face_mask_from_boxes(astronaut.shape, [(177, 67, 93, 93)])
    weak = obfuscate_faces(astronaut, mask, strength=0.02).astype(int)
    strong = obfuscate_faces(astronaut, mask, strength=0.2).astype(int)
    inside = mask > 0
    original = astronaut.astype(int)
    assert np.abs(strong - original)[inside].mean() > 2 * np.abs(weak - original)[inside].mean()


def test_fill_uses_the_given_colour(astronaut: np.ndarray) -> None:
    mask = face_mask_from_boxes(astronaut.shape, [(177, 67, 93, 93)])
    out = obfuscate_faces(astronaut, mask, method="fill", color=(10, 200, 30))
    assert (out[mask > 0] == (10, 200, 30)).all()


def test_face_mask_from_boxes() -> None:
    mask = face_mask_from_boxes((100, 120, 3), [(40, 30, 40, 40)], margin=0.15)
    assert mask.shape == (100, 120) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 255}
    assert mask[50, 60] == 255 and mask[0, 0] == 0
    # An ellipse with half-axes 0.65 * 40 = 26 px.
    assert abs((mask > 0).sum() - np.pi * 26 * 26) < 0.05 * np.pi * 26 * 26


def test_no_face_returns_an_unchanged_copy() -> None:
    flat = np.full((64, 80, 3), 128, np.uint8)
    out = obfuscate_faces(flat)
    assert out is not flat and np.array_equal(out, flat)


def test_bad_arguments_raise(astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="blur, mosaic, fill"):
        obfuscate_faces(astronaut, np.zeros(astronaut.shape[:2], np.uint8), method="swirl")
    with pytest.raises(ValueError, match="uint8"):
        obfuscate_faces(astronaut.astype(np.float32))
    with pytest.raises(ValueError, match="HxWx3"):
        detect_faces(astronaut[..., 0])
    with pytest.raises(ValueError, match="HxW face mask"):
        obfuscate_faces(astronaut, np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="strength"):
        obfuscate_faces(astronaut, np.zeros(astronaut.shape[:2], np.uint8), strength=0)


def test_missing_cascades_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(cv2.data, "haarcascades", str(tmp_path))
    face_detection._cascades.cache_clear()
    # A failed load is not cached, so the next test loads the real cascades again.
    with pytest.raises(FileNotFoundError, match=r"opencv-python-headless<5"):
        detect_faces(np.zeros((32, 32, 3), np.uint8), detector="haar")


def test_audit_cli_flags_the_unblurred_image(small_astronaut: np.ndarray, tmp_path: Path) -> None:
    _write_rgb(tmp_path / "astronaut.png", small_astronaut)
    _write_rgb(tmp_path / "astronaut_blurred.png", obfuscate_faces(small_astronaut))
    result = subprocess.run(
        [sys.executable, "-m", "p3m_lightning.data.audit", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "astronaut.png: 1 face" in result.stdout
    assert "astronaut_blurred" not in result.stdout
    assert "1 of 2 images still show a face" in result.stdout


def test_audit_of_a_p3m_split_reads_blurred_image(
    small_astronaut: np.ndarray, tmp_path: Path
) -> None:
    (tmp_path / "blurred_image").mkdir()
    (tmp_path / "original_image").mkdir()
    _write_rgb(tmp_path / "original_image" / "p_0.jpg", small_astronaut)
    _write_rgb(
        tmp_path / "blurred_image" / "p_0.jpg", obfuscate_faces(small_astronaut, method="mosaic")
    )
    assert audit_split(tmp_path) == []


@pytest.mark.parametrize("make", [False, True], ids=["missing", "empty"])
def test_audit_cli_rejects_a_dir_without_images(tmp_path: Path, make: bool) -> None:
    split = tmp_path / "P3M-500-P"
    if make:
        split.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "p3m_lightning.data.audit", str(split)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert str(split) in result.stderr
