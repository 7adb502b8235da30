"""P3M-ICP: alignment, pasting inside the face mask only, F/B consistency, the face sources."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from p3m_lightning.data.copy_paste import (
    FaceFolder,
    FaceSourceError,
    ImageCopyPaste,
    align_face,
    face_geometry,
    paste,
)
from p3m_lightning.data.synthetic_faces import generate_faces


def _ellipse_mask(shape: tuple[int, int], center: tuple[int, int], axes: tuple[int, int]):
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, center, axes, 0, 0, 360, 255, -1)
    return mask


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> FaceFolder:
    root = generate_faces(tmp_path_factory.mktemp("faces"), n=4, seed=1, size=96)
    return FaceFolder(root, "celebamask_hq")


def test_celebamask_layout_reads_images_and_face_masks(faces: FaceFolder) -> None:
    assert len(faces) == 4
    image, mask = faces.face(2)
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    assert mask.shape == (96, 96) and set(np.unique(mask)) == {0, 255}
    # The drawn face sits in the upper-middle of the portrait.
    geometry = face_geometry(mask)
    assert geometry is not None and 20 < geometry.center[0] < 76 and geometry.center[1] < 60


def test_folders_layout_and_a_missing_tree_is_named(tmp_path: Path, faces: FaceFolder) -> None:
    image, mask = faces.face(0)
    (tmp_path / "src" / "image").mkdir(parents=True)
    (tmp_path / "src" / "facemask").mkdir()
    cv2.imwrite(str(tmp_path / "src" / "image" / "a.png"), image[..., ::-1])
    cv2.imwrite(str(tmp_path / "src" / "facemask" / "a.png"), mask)
    folder = FaceFolder(tmp_path / "src", "folders")
    np.testing.assert_array_equal(folder.face(0)[1], mask)
    with pytest.raises(FaceSourceError, match="facemask"):
        FaceFolder(tmp_path / "src" / "image", "folders")


@pytest.mark.parametrize("seed", range(6))
def test_alignment_puts_the_source_face_centre_on_the_target_centre(seed: int) -> None:
    source = np.random.default_rng(seed).integers(0, 255, (120, 100, 3), dtype=np.uint8)
    source_mask = _ellipse_mask((120, 100), (40, 50), (12, 16))
    target_mask = _ellipse_mask((200, 240), (150, 80), (30, 40))
    rng = np.random.default_rng(seed)
    aligned, aligned_mask = align_face(source, source_mask, target_mask, rng, flip_prob=0.5)
    assert aligned.shape == (200, 240, 3) and aligned_mask.shape == (200, 240)
    got, want = face_geometry(aligned_mask), face_geometry(target_mask)
    assert got is not None and want is not None
    assert abs(got.center[0] - want.center[0]) < 1.5 and abs(got.center[1] - want.center[1]) < 1.5
    # Sizes agree up to the random scale of 0.8-1.2 (and the resampling of the mask).
    assert 0.75 < got.size / want.size < 1.25


def test_paste_changes_only_pixels_inside_the_target_face_mask_and_keeps_composition(
    faces: FaceFolder,
) -> None:
    rng = np.random.default_rng(0)
    h, w = 160, 120
    alpha = np.zeros((h, w), np.float32)
    alpha[20:, 20:100] = 1.0
    alpha[20:, 18:22] = 0.5
    fg = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    bg = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    target_mask = _ellipse_mask((h, w), (60, 60), (18, 24))
    image = np.round(alpha[..., None] * fg + (1 - alpha[..., None]) * bg).astype(np.uint8)
    icp = ImageCopyPaste(faces, prob=1.0)
    out = icp(image, fg, bg, target_mask, np.random.default_rng(3))
    assert out.pasted
    outside = target_mask == 0
    for before, after in ((image, out.image), (fg, out.fg), (bg, out.bg)):
        np.testing.assert_array_equal(after[outside], before[outside])
    inside = ~outside
    assert np.abs(out.image[inside].astype(int) - image[inside]).mean() > 5
    # Inside the mask image, F and B are the pasted pixels, so alpha F + (1 - alpha) B = image.
    np.testing.assert_array_equal(out.fg[inside], out.image[inside])
    np.testing.assert_array_equal(out.bg[inside], out.image[inside])
    np.testing.assert_array_equal(paste(image, out.aligned, target_mask), out.image)


def test_no_paste_without_face_mask_or_with_probability_zero(faces: FaceFolder) -> None:
    image = np.full((64, 64, 3), 7, np.uint8)
    mask = _ellipse_mask((64, 64), (32, 30), (10, 12))
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    never = ImageCopyPaste(faces, prob=0.0)(image, image, image, mask, rng)
    assert not never.pasted and never.image is image
    # Probability 0 draws nothing: the caller's generator is untouched (bit-identical training).
    assert rng.bit_generator.state == state
    assert not ImageCopyPaste(faces, prob=1.0)(image, image, image, None, rng).pasted
    with pytest.raises(ValueError, match="prob"):
        ImageCopyPaste(faces, prob=1.5)
