"""Privacy fails closed: the face region's sources, the fallbacks, and on-the-fly B-training."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata

from p3m_lightning.data.p3m10k import P3MEvalDataset, P3MTrainDataset
from p3m_lightning.data.privacy import (
    FaceObfuscator,
    PrivacyError,
    detect_faces,
    find_face_region,
    head_region,
    person_region,
)
from p3m_lightning.data.synthetic import render_portrait
from p3m_lightning.data.transforms import P3MTrainTransform, normalise_image


def face_energy(image: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Mean absolute Laplacian of the grey image inside ``box`` (x, y, w, h): facial detail."""
    x, y, w, h = box
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_32F))[y : y + h, x : x + w].mean())


def _person_alpha(shape: tuple[int, int]) -> np.ndarray:
    alpha = np.zeros(shape, np.uint8)
    alpha[shape[0] // 4 :, shape[1] // 4 : 3 * shape[1] // 4] = 255
    return alpha


SIDE = 256
Box = tuple[int, int, int, int]


def _coverage(region: np.ndarray, box: Box) -> float:
    """Share of the face in ``box`` (x, y, w, h), the ellipse inscribed in it, inside the
    nonzero ``region``: the box's corners are hair and background, which a detector's ellipse
    need not reach (MTCNN's ellipse leaves 0.4 % of the square box below, all in its corners,
    outside)."""
    x, y, w, h = box
    face = np.zeros(region.shape, np.uint8)
    cv2.ellipse(face, ((x + w / 2, y + h / 2), (w, h), 0), 255, -1)
    return float((region[face > 0] > 0).mean())


@pytest.fixture(scope="module")
def two_people() -> tuple[np.ndarray, np.ndarray, Box, Box]:
    """The astronaut beside herself turned 90 degrees: one face the detector finds, one it
    misses. Returns the image, a matte of both people and the found and the missed face box."""
    upright = cv2.resize(skdata.astronaut(), (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    alpha = np.zeros((SIDE, SIDE), np.uint8)
    alpha[20:, 40:210] = 255  # roughly the astronaut, head to waist
    image = np.concatenate([upright, np.rot90(upright)], axis=1)
    matte = np.concatenate([alpha, np.rot90(alpha)], axis=1)
    found = (88, 33, 46, 46)  # her face at 256 px
    x, y, w, h = found
    # rot90 (counter-clockwise) maps (row, col) to (SIDE - 1 - col, row); the copy is to the right.
    missed = (SIDE + y, SIDE - x - w, h, w)
    (detected,) = detect_faces(np.ascontiguousarray(image))
    assert _coverage(cv2.rectangle(np.zeros(matte.shape, np.uint8), detected, 255, -1), found) > 0.9
    return np.ascontiguousarray(image), np.ascontiguousarray(matte), found, missed


def test_a_face_the_detector_misses_beside_one_it_finds_is_obfuscated(two_people) -> None:
    image, alpha, found, missed = two_people
    region = find_face_region(image, None, alpha)
    assert region.source == "detector"
    assert _coverage(region.mask, found) == 1.0 and _coverage(region.mask, missed) == 1.0
    shown, changed, source = FaceObfuscator()(image, None, alpha)
    assert source == "detector" and changed.sum() == (region.mask > 0).sum()
    for box in (found, missed):
        assert face_energy(shown, box) < 0.5 * face_energy(image, box)
    # The rules that obfuscate less leave the missed face (lower in the frame) clear.
    for rule in ("head", "faces"):
        partial = find_face_region(image, None, alpha, on_partial=rule)
        assert _coverage(partial.mask, found) == 1.0, rule
        assert _coverage(partial.mask, missed) < 0.5, rule
    with pytest.raises(ValueError, match="on_partial"):
        find_face_region(image, None, alpha, on_partial="maybe")
    with pytest.raises(ValueError, match="on_partial"):
        FaceObfuscator(on_partial="maybe")


def test_an_empty_face_mask_is_treated_as_missing(two_people) -> None:
    image, alpha, found, _ = two_people
    empty = np.zeros(alpha.shape, np.uint8)
    region = find_face_region(image, empty, alpha)
    assert region.source == "detector" and _coverage(region.mask, found) == 1.0
    without = find_face_region(image, empty, alpha, use_detector=False)
    assert without.source == "person"
    np.testing.assert_array_equal(without.mask, person_region(alpha))
    skipped = find_face_region(image, empty, alpha, on_no_face="skip", use_detector=False)
    assert skipped.source == "skipped" and skipped.mask is None


def test_region_sources_in_order() -> None:
    image = np.zeros((64, 64, 3), np.uint8)  # no face for the detector
    alpha = _person_alpha((64, 64))
    mask = np.zeros((64, 64), np.uint8)
    mask[20:30, 20:30] = 1
    given = find_face_region(image, mask, alpha)
    assert given.source == "mask" and given.mask is not None
    assert (given.mask > 0).sum() == 100
    assert find_face_region(image, None, alpha).source == "person"
    head = find_face_region(image, None, alpha, on_no_face="head")
    assert head.source == "head"
    assert find_face_region(image, None, alpha, on_no_face="skip").mask is None
    with pytest.raises(PrivacyError, match="on_no_face"):
        find_face_region(image, None, alpha, on_no_face="error")
    with pytest.raises(ValueError, match="on_no_face"):
        find_face_region(image, None, alpha, on_no_face="maybe")
    # Without a matte the fallback covers everything.
    assert (find_face_region(image, None, None).mask == 255).all()


def test_person_and_head_regions_follow_the_matte() -> None:
    alpha = _person_alpha((200, 100))  # rows 50..199, columns 25..74
    person = person_region(alpha) > 0
    assert person[alpha > 0].all() and not person[:40].any()
    head = head_region(alpha) > 0
    rows = np.nonzero(head.any(axis=1))[0]
    # The top half of the (slightly grown) silhouette: from its top to about row 125.
    assert rows[0] < 50 and 115 < rows[-1] < 135
    assert not head[150:].any()
    empty = np.zeros((10, 10), np.uint8)
    assert (person_region(empty) == 255).all() and (head_region(empty) == 255).all()


@pytest.fixture(scope="module")
def normal_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """Two square normal portraits with mattes, F, B and face masks (a B-training source)."""
    root = tmp_path_factory.mktemp("normal")
    portraits = []
    for i in range(2):
        portrait = render_portrait(128, 128, np.random.default_rng(i))
        portraits.append(portrait)
        for folder, array in (
            ("original_image", portrait.image),
            ("mask", portrait.alpha),
            ("facemask", portrait.face_mask),
            ("fg", portrait.fg),
            ("bg", portrait.bg),
        ):
            (root / "train" / folder).mkdir(parents=True, exist_ok=True)
            data = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
            cv2.imwrite(str(root / "train" / folder / f"p_{i}.png"), data)
    return root, portraits


def _identity() -> P3MTrainTransform:
    # Square 128 px images, crop side = the image, no flip, resize to the same size: identity.
    return P3MTrainTransform(size=128, crop_sizes=(10_000,), flip_prob=0.0)


def _rgb(tensor: torch.Tensor) -> np.ndarray:
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    return (
        np.rint((tensor.numpy() * std + mean) * 255)
        .clip(0, 255)
        .astype(np.uint8)
        .transpose(1, 2, 0)
    )


def test_on_the_fly_b_training_obfuscates_image_and_f_inside_the_face_only(normal_root) -> None:
    root, portraits = normal_root
    dataset = P3MTrainDataset(
        root, "original_image", transform=_identity(), obfuscate=FaceObfuscator(), verify="quick"
    )
    for index, portrait in enumerate(portraits):
        sample = dataset[index]
        assert sample["privacy"] == "mask"
        face = portrait.face_mask > 0
        image, fg = sample["image"].numpy(), sample["fg"].numpy()
        clear_image, clear_fg = normalise_image(portrait.image), normalise_image(portrait.fg)
        np.testing.assert_array_equal(image[:, ~face], clear_image[:, ~face])
        np.testing.assert_array_equal(fg[:, ~face], clear_fg[:, ~face])
        assert np.abs(image[:, face] - clear_image[:, face]).mean() > 0.05
        # F carries exactly the obfuscated face, so alpha F + (1 - alpha) B is the image there.
        np.testing.assert_array_equal(fg[:, face], image[:, face])
        np.testing.assert_array_equal(sample["bg"].numpy()[:, face], image[:, face])


def test_without_face_masks_the_detector_or_the_fallback_hides_the_face(
    normal_root, tmp_path: Path
) -> None:
    root, portraits = normal_root
    copy = tmp_path / "nofacemask"
    for folder in ("original_image", "mask", "fg", "bg"):
        (copy / "train" / folder).mkdir(parents=True)
        for path in (root / "train" / folder).iterdir():
            (copy / "train" / folder / path.name).write_bytes(path.read_bytes())
    for use_detector, expected in ((True, {"detector", "person"}), (False, {"person"})):
        dataset = P3MTrainDataset(
            copy,
            "original_image",
            transform=_identity(),
            obfuscate=FaceObfuscator(use_detector=use_detector),
            verify="quick",
        )
        for index, portrait in enumerate(portraits):
            sample = dataset[index]
            assert sample["privacy"] in expected
            box = cv2.boundingRect((portrait.face_mask > 0).astype(np.uint8))
            shown = _rgb(sample["image"])
            assert face_energy(shown, box) < 0.5 * face_energy(portrait.image, box)


def test_skipped_samples_are_obfuscated_whole_and_dropped_by_the_task(normal_root, tmp_path):
    from p3m_lightning.evaluation import drop_skipped

    root, _ = normal_root
    copy = tmp_path / "nofacemask"
    for folder in ("original_image", "mask", "fg", "bg"):
        (copy / "train" / folder).mkdir(parents=True)
        for path in (root / "train" / folder).iterdir():
            (copy / "train" / folder / path.name).write_bytes(path.read_bytes())
    obfuscator = FaceObfuscator(on_no_face="skip", use_detector=False)
    dataset = P3MTrainDataset(
        copy, "original_image", transform=_identity(), obfuscate=obfuscator, verify="quick"
    )
    samples = [dataset[0], dataset[1]]
    assert [s["privacy"] for s in samples] == ["skipped", "skipped"]
    batch = torch.utils.data.default_collate(samples)
    assert drop_skipped(batch) is None
    mixed = dict(batch, privacy=["mask", "skipped"])
    kept = drop_skipped(mixed)
    assert kept["image"].shape[0] == 1 and kept["name"] == [samples[0]["name"]]


def test_empty_face_mask_files_are_obfuscated_in_training_and_evaluation(normal_root, tmp_path):
    root, portraits = normal_root
    copy = tmp_path / "blank"
    for folder in ("original_image", "mask", "facemask", "fg", "bg"):
        (copy / "train" / folder).mkdir(parents=True)
        for path in (root / "train" / folder).iterdir():
            (copy / "train" / folder / path.name).write_bytes(path.read_bytes())
    # A blank mask file, as a failed export or a careless annotation leaves it.
    cv2.imwrite(str(copy / "train" / "facemask" / "p_0.png"), np.zeros((128, 128), np.uint8))
    box = cv2.boundingRect((portraits[0].face_mask > 0).astype(np.uint8))
    clear = face_energy(portraits[0].image, box)
    for use_detector, expected in ((True, {"detector", "person"}), (False, {"person"})):
        obfuscator = FaceObfuscator(use_detector=use_detector)
        dataset = P3MTrainDataset(
            copy, "original_image", transform=_identity(), obfuscate=obfuscator, verify="quick"
        )
        assert dataset[0]["privacy"] in expected
        assert face_energy(_rgb(dataset[0]["image"]), box) < 0.5 * clear
        assert dataset[1]["privacy"] == "mask"
        evaluation = P3MEvalDataset(
            copy / "train", "original_image", obfuscate=obfuscator, verify="quick"
        )
        sample = evaluation[0]
        assert sample["privacy"] in expected
        assert (sample["privacy_mask"][0].numpy()[portraits[0].face_mask > 0] > 0).all()
        assert face_energy(_rgb(sample["image"]), box) < 0.5 * clear
