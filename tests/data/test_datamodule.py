"""The DataModule on the synthetic P3M-10k: the four PPT settings, errors, samplers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from p3m_lightning.data.datamodule import (
    P3MDataModule,
    PaddingMarked,
    UnpaddedDistributedSampler,
)
from p3m_lightning.data.p3m10k import DatasetError
from p3m_lightning.data.synthetic import generate

TINY = {"n_train": 4, "n_val": 3, "seed": 0, "min_side": 96, "max_side": 128}


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "p3m10k"
    generate(root, **TINY)
    return root


def _module(root: Path, **kwargs) -> P3MDataModule:
    options = dict(root=str(root), train_size=64, batch_size=2, num_workers=0, verify="quick")
    options.update(kwargs)
    return P3MDataModule(**options)


@pytest.mark.parametrize(
    ("ppt_train", "eval_sets"),
    [
        ("B", ["P3M-500-P"]),
        ("B", ["P3M-500-NP"]),
        ("N", ["P3M-500-P"]),
        ("N", ["P3M-500-NP"]),
    ],
)
def test_four_ppt_settings_load(synthetic_root: Path, ppt_train: str, eval_sets: list[str]) -> None:
    dm = _module(synthetic_root, ppt_train=ppt_train, eval_sets=eval_sets)
    dm.setup("fit")
    expected_dir = "blurred_image" if ppt_train == "B" else "original_image"
    assert dm.train_dataset.image_dir == expected_dir
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 64, 64)
    assert batch["alpha"].shape == batch["trimap"].shape == (2, 1, 64, 64)
    assert float(batch["alpha"].min()) >= 0.0 and float(batch["alpha"].max()) <= 1.0
    (loader,) = dm.test_dataloader()
    sample = next(iter(loader))
    assert sample["image"].shape[0] == 1 and sample["trimap"].dtype == torch.uint8
    assert len(loader.dataset) == TINY["n_val"]


def test_blurred_twin_differs_only_in_the_face(synthetic_root: Path) -> None:
    dm = _module(synthetic_root, eval_sets=["P3M-500-NP", "P3M-500-NP-B"])
    dm.setup("validate")
    for index in range(TINY["n_val"]):
        normal, blurred = (dm.eval_datasets[n][index] for n in ("P3M-500-NP", "P3M-500-NP-B"))
        # P3M-500-NP has no face masks (as released): the detector or the fallback decides.
        assert "face_mask" not in normal
        assert blurred["privacy"] in ("detector", "person")
        changed = blurred["privacy_mask"][0] > 0
        diff = (normal["image"] - blurred["image"]).abs().sum(0)
        assert diff[changed].mean() > 0.05
        assert float(diff[~changed].max()) == 0.0


def test_missing_dataset_explains_where_to_get_it(tmp_path: Path) -> None:
    dm = _module(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="P3M10K_ROOT") as err:
        dm.setup("fit")
    assert "agreement" in str(err.value) and "data=synthetic" in str(err.value)


def test_n_training_on_public_release_says_the_two_ways_out(synthetic_root: Path, tmp_path) -> None:
    public = tmp_path / "public"
    (public / "train").mkdir(parents=True)
    for name in ("blurred_image", "mask", "fg", "bg"):
        (public / "train" / name).symlink_to(synthetic_root / "train" / name)
    (public / "validation").symlink_to(synthetic_root / "validation")
    dm = _module(public, ppt_train="N")
    with pytest.raises(DatasetError, match="has none") as err:
        dm.setup("fit")
    assert "normal_train_dir" in str(err.value) and "data=synthetic" in str(err.value)


def test_b_training_on_own_normal_portraits_is_obfuscated_on_the_fly(synthetic_root: Path) -> None:
    dm = _module(synthetic_root, ppt_train="B", normal_train_dir=str(synthetic_root))
    dm.setup("fit")
    assert dm.train_dataset.image_dir == "original_image"
    assert dm.train_dataset.obfuscate is not None


def test_synthetic_data_is_generated_on_first_use(tmp_path: Path) -> None:
    dm = _module(tmp_path / "gen", synthetic=TINY)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_dataset) == TINY["n_train"]


@pytest.mark.parametrize("world", [2, 3])
def test_eval_sampler_neither_pads_nor_drops(world: int) -> None:
    data = list(range(7))
    seen = []
    for rank in range(world):
        sampler = UnpaddedDistributedSampler(data, num_replicas=world, rank=rank, shuffle=False)
        indices = list(sampler)
        assert len(indices) == len(sampler)
        seen += indices
    assert sorted(seen) == data


def test_a_process_without_images_gets_one_marked_padding_sample() -> None:
    data = [{"name": "only"}]
    samplers = [UnpaddedDistributedSampler(data, num_replicas=2, rank=r) for r in (0, 1)]
    assert [list(s) for s in samplers] == [[0], [1]]
    marked = PaddingMarked(data)
    assert len(marked) == 1 and "padding" not in marked[0]
    assert marked[1] == {"name": "only", "padding": True}


def test_epochs_draw_new_but_reproducible_crops(synthetic_root: Path) -> None:
    def first_batch(epoch: int) -> torch.Tensor:
        dm = _module(synthetic_root)
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return next(iter(loader))["alpha"]

    assert torch.equal(first_batch(0), first_batch(0))
    assert not torch.equal(first_batch(0), first_batch(1))


def test_full_verification_runs_once_in_prepare_data(synthetic_root: Path, tmp_path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(synthetic_root, broken)
    victim = sorted((broken / "validation" / "P3M-500-P" / "blurred_image").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    dm = _module(broken, verify="full")
    dm.setup("validate")  # names only: setup runs in every DDP process
    with pytest.raises(DatasetError, match=victim.name):
        dm.prepare_data()


def test_held_out_split_is_seeded_disjoint_and_recorded(synthetic_root: Path) -> None:
    dm = _module(synthetic_root, val_split=2, seed=5)
    dm.setup("fit")
    assert dm.val_set_names == ["train-heldout"] and len(dm.heldout_names) == 2
    trained = {s.name for s in dm.train_dataset.samples}
    assert trained.isdisjoint(dm.heldout_names)
    assert len(trained) + 2 == TINY["n_train"]
    (loader,) = dm.val_dataloader()
    sample = next(iter(loader))
    assert sample["name"][0] in dm.heldout_names and sample["trimap"].dtype == torch.uint8
    again = _module(synthetic_root, val_split=2, seed=5)
    again.setup("fit")
    assert again.heldout_names == dm.heldout_names
    others = {tuple(_held_out(synthetic_root, seed)) for seed in range(6)}
    assert len(others) > 1  # the seed chooses
    assert _module(synthetic_root).val_dataloader() == []  # no split: no validation at all
    with pytest.raises(ValueError, match="every one"):
        _module(synthetic_root, val_split=TINY["n_train"]).setup("fit")


def _held_out(root: Path, seed: int) -> list[str]:
    dm = _module(root, val_split=2, seed=seed)
    dm.setup("fit")
    return dm.heldout_names


def test_trimap_based_models_need_the_test_sets_trimaps(synthetic_root: Path, tmp_path) -> None:
    import shutil

    root = tmp_path / "no_trimaps"
    shutil.copytree(synthetic_root, root)
    shutil.rmtree(root / "validation" / "P3M-500-NP" / "trimap")
    module = _module(root, eval_sets=["P3M-500-P", "P3M-500-NP"])
    module.setup("test")
    with pytest.raises(DatasetError, match=r"P3M-500-NP under .* have no trimap/ folder"):
        module.trimap_sources()
    assert module.trimap_sources(allow_generated=True) == {
        "P3M-500-P": "files",
        "P3M-500-NP": "generated",
    }
    accepting = _module(root, eval_sets=["P3M-500-NP"], generated_trimaps=True)
    accepting.setup("test")
    assert accepting.trimap_sources() == {"P3M-500-NP": "generated"}


def test_training_folders_of_other_names_come_from_config(synthetic_root: Path, tmp_path) -> None:
    import shutil

    root = tmp_path / "renamed"
    shutil.copytree(synthetic_root, root)
    (root / "train").rename(root / "training")
    (root / "training" / "blurred_image").rename(root / "training" / "img")
    (root / "training" / "mask").rename(root / "training" / "matte")
    folders = {"split": "training", "blurred_image": "img", "mask": "matte"}
    module = _module(root, eval_sets=["P3M-500-P"], train_folders=folders)
    module.setup("fit")
    reference = _module(synthetic_root, eval_sets=["P3M-500-P"])
    reference.setup("fit")
    assert len(module.train_dataset) == len(reference.train_dataset) > 0
    sample, expected = module.train_dataset[0], reference.train_dataset[0]
    assert sample["name"] == expected["name"]
    assert torch.equal(sample["alpha"], expected["alpha"])
    assert torch.equal(sample["image"], expected["image"])
    with pytest.raises(ValueError, match=r"train_folders: unknown keys \['masks'\]"):
        _module(root, train_folders={"masks": "matte"})
    with pytest.raises(DatasetError, match="train/blurred_image: missing folder"):
        _module(root, eval_sets=["P3M-500-P"]).setup("fit")
