"""P3M-10k datasets: loading tiny real-file trees, verification errors, hooks, reproducibility."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from p3m_lightning.data.p3m10k import (
    MAX_LISTED,
    DatasetError,
    P3MEvalDataset,
    P3MTrainDataset,
    read_mask,
    read_rgb,
    verify_split,
)
from p3m_lightning.data.transforms import normalise_image

SIZES = [(64, 80), (96, 72), (80, 96)]
"""(height, width) of the fixture samples."""


def _alpha(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    distance = np.hypot(y - height / 2, x - width / 2) - min(height, width) / 3
    return np.rint(np.clip(0.5 - distance / 4, 0, 1) * 255).astype(np.uint8)


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    assert cv2.imwrite(str(path), data)


def _rgb(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def make_tree(root: Path, count: int = 3, fgbg: bool = True, facemask: bool = True) -> Path:
    """A P3M-10k tree of ``count`` real image files per folder (stems ``s_000``, ...)."""
    rng = np.random.default_rng(0)
    splits = {
        "train": ["blurred_image", "mask"] + (["fg", "bg"] if fgbg else []),
        "validation/P3M-500-P": ["blurred_image", "mask", "trimap"],
        "validation/P3M-500-NP": ["original_image", "mask"],
    }
    if facemask:
        splits["train"].append("facemask")
        splits["validation/P3M-500-P"].append("facemask")
    for split, folders in splits.items():
        for i in range(count):
            height, width = SIZES[i % len(SIZES)]
            alpha = _alpha(height, width)
            face = np.zeros_like(alpha)
            face[height // 3 : height // 2, width // 3 : width // 2] = 255
            maps = {
                "blurred_image": (_rgb(rng, height, width), ".jpg"),
                "original_image": (_rgb(rng, height, width), ".jpg"),
                "mask": (alpha, ".png"),
                "trimap": (np.where(alpha == 255, 255, np.where(alpha > 0, 128, 0)), ".png"),
                "facemask": (face, ".png"),
                "fg": (_rgb(rng, height, width), ".png"),
                "bg": (_rgb(rng, height, width), ".jpg"),
            }
            for folder in folders:
                array, suffix = maps[folder]
                _write(root / split / folder / f"s_{i:03d}{suffix}", array.astype(np.uint8))
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "P3M-10k")


def test_train_samples_have_the_batch_vocabulary(tree: Path) -> None:
    dataset = P3MTrainDataset(tree, size=32)
    assert len(dataset) == 3
    for index in range(3):
        sample = dataset[index]
        assert list(sample) == ["image", "alpha", "trimap", "fg", "bg", "name"]
        assert sample["name"] == f"s_{index:03d}"
        for key in ("image", "fg", "bg"):
            assert sample[key].shape == (3, 32, 32) and sample[key].dtype == torch.float32
        for key in ("alpha", "trimap"):
            assert sample[key].shape == (1, 32, 32) and sample[key].dtype == torch.float32
        assert float(sample["alpha"].min()) >= 0 and float(sample["alpha"].max()) <= 1
        assert float(sample["trimap"].min()) >= 0 and float(sample["trimap"].max()) <= 255
        assert sample["image"].abs().max() < 3


def test_train_samples_are_seeded_by_seed_index_and_epoch(tree: Path) -> None:
    dataset = P3MTrainDataset(tree, size=32, seed=3)
    again = P3MTrainDataset(tree, size=32, seed=3)
    torch.testing.assert_close(dataset[1]["image"], again[1]["image"], rtol=0, atol=0)
    first = dataset[1]["image"]
    dataset.set_epoch(1)
    assert dataset.epoch == 1
    assert not torch.equal(first, dataset[1]["image"])
    assert not torch.equal(first, P3MTrainDataset(tree, size=32, seed=4)[1]["image"])


def test_set_epoch_reaches_persistent_workers(tree: Path) -> None:
    dataset = P3MTrainDataset(tree, size=32)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, persistent_workers=True)
    epochs = []
    for epoch in range(2):
        dataset.set_epoch(epoch)
        epochs.append(next(iter(loader))["image"])
    reference = P3MTrainDataset(tree, size=32, verify="off")
    for epoch, batch in enumerate(epochs):
        reference.set_epoch(epoch)
        expected = torch.stack([reference[i]["image"] for i in range(3)])
        torch.testing.assert_close(batch, expected, rtol=0, atol=0)


def test_image_dir_picks_the_training_images(tree: Path) -> None:
    for path in (tree / "train" / "blurred_image").iterdir():
        _write(tree / "train" / "original_image" / path.name, np.zeros((*_size(path), 3), np.uint8))
    normal = P3MTrainDataset(tree, image_dir="original_image", size=32)
    blurred = P3MTrainDataset(tree, size=32)
    black = torch.from_numpy(normalise_image(np.zeros((32, 32, 3), np.uint8)))
    assert torch.equal(normal[0]["image"], black)
    assert not torch.equal(blurred[0]["image"], black)


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size[1], image.size[0]


def test_fgbg_image_needs_no_fg_bg(tmp_path: Path) -> None:
    root = make_tree(tmp_path, fgbg=False)
    sample = P3MTrainDataset(root, size=32, fgbg="image")[0]
    assert torch.equal(sample["fg"], sample["image"])
    assert torch.equal(sample["bg"], sample["image"])


def test_missing_fg_bg_names_the_prepare_command(tmp_path: Path) -> None:
    root = make_tree(tmp_path, fgbg=False)
    with pytest.raises(DatasetError) as info:
        P3MTrainDataset(root, size=32)
    message = str(info.value)
    assert f"python -m p3m_lightning.data.prepare_fgbg {root}" in message
    assert str(root / "train" / "fg") in message and str(root / "train" / "bg") in message
    assert "fgbg='image'" in message


def test_partial_fg_also_names_the_prepare_command(tree: Path) -> None:
    (tree / "train" / "fg" / "s_001.png").unlink()
    with pytest.raises(DatasetError, match="prepare_fgbg") as info:
        P3MTrainDataset(tree, size=32)
    assert "s_001.jpg: no matching file in fg/" in str(info.value)


def test_obfuscate_hook_gets_the_face_mask(tree: Path) -> None:
    calls = []

    def obfuscate(image: np.ndarray, face_mask: np.ndarray | None, alpha: np.ndarray):
        calls.append(face_mask)
        assert alpha.shape == image.shape[:2] and alpha.dtype == np.uint8
        return np.zeros_like(image), np.ones(image.shape[:2], bool), "mask"

    sample = P3MTrainDataset(tree, size=32, fgbg="image", obfuscate=obfuscate)[0]
    assert calls[0].shape == SIZES[0] and set(np.unique(calls[0])) == {0, 255}
    assert torch.equal(
        sample["image"], torch.from_numpy(normalise_image(np.zeros((32, 32, 3), np.uint8)))
    )
    assert sample["privacy"] == "mask"

    for path in (tree / "train" / "facemask").iterdir():
        path.unlink()
    (tree / "train" / "facemask").rmdir()
    calls.clear()
    P3MTrainDataset(tree, size=32, obfuscate=obfuscate)[0]
    assert calls == [None]


def test_eval_samples_are_whole_images(tree: Path) -> None:
    dataset = P3MEvalDataset(tree / "validation" / "P3M-500-P")
    assert len(dataset) == 3
    for index, (height, width) in enumerate(SIZES):
        sample = dataset[index]
        assert list(sample) == ["image", "alpha", "trimap", "face_mask", "name"]
        assert sample["image"].shape == (3, height, width)
        assert sample["image"].dtype == torch.float32
        assert sample["alpha"].shape == (1, height, width)
        assert sample["alpha"].dtype == torch.float32
        assert float(sample["alpha"].min()) >= 0 and float(sample["alpha"].max()) <= 1
        assert sample["trimap"].dtype == torch.uint8 and sample["trimap"].shape == (
            1,
            height,
            width,
        )
        assert set(sample["trimap"].unique().tolist()) == {0, 128, 255}
        assert sample["face_mask"].dtype == torch.uint8
        assert set(sample["face_mask"].unique().tolist()) == {0, 255}
        path = tree / "validation" / "P3M-500-P" / "blurred_image" / f"s_{index:03d}.jpg"
        expected = normalise_image(read_rgb(path))
        np.testing.assert_array_equal(sample["image"].numpy(), expected)


def test_eval_without_trimap_folder_generates_one(tree: Path) -> None:
    dataset = P3MEvalDataset(tree / "validation" / "P3M-500-NP", image_dir="original_image")
    sample = dataset[0]
    assert "face_mask" not in sample
    assert sample["trimap"].dtype == torch.uint8
    trimap = sample["trimap"][0].numpy()
    assert set(np.unique(trimap).tolist()) == {0, 128, 255}
    alpha = sample["alpha"][0].numpy()
    assert np.all(alpha[trimap == 255] == 1) and np.all(alpha[trimap == 0] == 0)


def test_eval_obfuscate_builds_a_blurred_twin(tree: Path) -> None:
    masks = []

    def obfuscate(image: np.ndarray, face_mask: np.ndarray | None, alpha: np.ndarray):
        masks.append(face_mask)
        return 255 - image, face_mask > 0, "mask"

    split = tree / "validation" / "P3M-500-P"
    sample = P3MEvalDataset(split, obfuscate=obfuscate)[0]
    assert masks[0].shape == SIZES[0]
    inverted = 255 - read_rgb(split / "blurred_image" / "s_000.jpg")
    np.testing.assert_array_equal(sample["image"].numpy(), normalise_image(inverted))
    assert sample["privacy"] == "mask"
    np.testing.assert_array_equal(sample["privacy_mask"][0].numpy(), np.where(masks[0] > 0, 255, 0))


def test_masks_take_the_first_channel(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    _write(tmp_path / "m.png", rgb)
    mask = read_mask(tmp_path / "m.png")
    assert mask.shape == (8, 8) and np.all(mask == 200)


# ---------------------------------------------------------------- broken trees


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _offending(message: str) -> list[str]:
    return re.findall(r"^  (/\S+):", message, flags=re.MULTILINE)


def test_every_problem_is_reported_in_one_error(tree: Path) -> None:
    train = tree / "train"
    (train / "mask" / "s_000.png").unlink()  # an image without its mask
    _write(train / "mask" / "s_009.png", _alpha(64, 80))  # a mask without its image
    _truncate(train / "blurred_image" / "s_001.jpg")  # a truncated JPEG
    (train / "fg" / "s_002.png").write_text("not an image")  # a non-image with a .png name
    _write(train / "bg" / "s_002.jpg", np.zeros((10, 10, 3), np.uint8))  # the wrong size
    with pytest.raises(DatasetError) as info:
        P3MTrainDataset(tree, size=32)
    message = str(info.value)
    expected = {
        train / "blurred_image" / "s_000.jpg": "no matching file in mask/",
        train / "mask" / "s_009.png": "no matching blurred_image/",
        train / "blurred_image" / "s_001.jpg": "cannot be decoded",
        train / "fg" / "s_002.png": "cannot be decoded",
        train / "bg" / "s_002.jpg": "size 10x10 differs from blurred_image/ (96x80)",
    }
    assert "5 problem(s)" in message
    for path, reason in expected.items():
        assert f"  {path}: {reason}" in message
    assert "re-download" in message and "What to do" in message


def test_sixteen_bit_mask_is_reported(tree: Path) -> None:
    path = tree / "train" / "mask" / "s_001.png"
    _write(path, read_mask(path).astype(np.uint16) * 257)
    with pytest.raises(DatasetError, match=r"s_001\.png: is a I;16 image; masks must be 8-bit"):
        P3MTrainDataset(tree, size=32)


def test_missing_folder(tree: Path) -> None:
    for path in (tree / "train" / "mask").iterdir():
        path.unlink()
    (tree / "train" / "mask").rmdir()
    with pytest.raises(DatasetError, match=r"train/mask: missing folder") as info:
        P3MTrainDataset(tree, size=32, verify="off")
    assert "1 problem(s)" in str(info.value)


def test_more_than_twenty_problems_are_counted(tree: Path) -> None:
    folder = tree / "validation" / "P3M-500-NP" / "mask"
    for i in range(100, 130):
        _write(folder / f"s_{i:03d}.png", _alpha(8, 8))
    with pytest.raises(DatasetError) as info:
        P3MEvalDataset(tree / "validation" / "P3M-500-NP", image_dir="original_image")
    message = str(info.value)
    listed = _offending(message)
    assert listed == [str(folder / f"s_{i:03d}.png") for i in range(100, 100 + MAX_LISTED)]
    assert "30 problem(s)" in message
    assert "  ... and 10 more" in message


def test_quick_checks_names_only_and_off_skips_incomplete_samples(tree: Path) -> None:
    _truncate(tree / "train" / "blurred_image" / "s_001.jpg")
    assert len(P3MTrainDataset(tree, size=32, verify="quick")) == 3
    (tree / "train" / "mask" / "s_000.png").unlink()
    with pytest.raises(DatasetError):
        P3MTrainDataset(tree, size=32, verify="quick")
    assert [s.name for s in P3MTrainDataset(tree, size=32, verify="off").samples] == [
        "s_001",
        "s_002",
    ]


def test_undecodable_file_under_verify_off_names_the_file(tree: Path) -> None:
    (tree / "train" / "mask" / "s_000.png").write_bytes(b"garbage")
    dataset = P3MTrainDataset(tree, size=32, verify="off")
    with pytest.raises(DatasetError, match=r"s_000\.png.*verify='full'"):
        dataset[0]


def test_hidden_and_foreign_files_are_ignored(tree: Path) -> None:
    (tree / "train" / "fg" / ".s_000.png.123.tmp").write_bytes(b"partial")
    (tree / "train" / "mask" / "notes.txt").write_text("hello")
    (tree / "train" / "mask" / ".DS_Store").write_bytes(b"\0")
    assert len(P3MTrainDataset(tree, size=32)) == 3


def test_verify_split_returns_paths_per_folder(tree: Path) -> None:
    samples = verify_split(tree / "train", ["blurred_image", "mask", "fg"], mode="full")
    assert [s.name for s in samples] == ["s_000", "s_001", "s_002"]
    assert list(samples[0].paths) == ["blurred_image", "mask", "fg"]
    assert samples[0].paths["fg"] == tree / "train" / "fg" / "s_000.png"
    with pytest.raises(ValueError, match="verify must be one of"):
        verify_split(tree / "train", ["blurred_image"], mode="fast")  # type: ignore[arg-type]
