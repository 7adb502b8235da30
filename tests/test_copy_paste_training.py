"""P3M-CP in training: the dataset pastes (image level) or carries the source (feature level),
prob 0 changes nothing, and `cp=icp|fcp` train end to end on the synthetic set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from p3m_lightning.data.copy_paste import FaceFolder, ImageCopyPaste
from p3m_lightning.data.p3m10k import P3MTrainDataset
from p3m_lightning.data.synthetic import generate
from p3m_lightning.data.synthetic_faces import generate_faces
from p3m_lightning.report import privacy_text
from p3m_lightning.train import train

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY = {"n_train": 4, "n_val": 2, "seed": 0, "min_side": 64, "max_side": 96}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("cp")
    return generate(base / "p3m10k", **TINY), generate_faces(base / "faces", n=3, size=64)


def _dataset(root: Path, faces: Path, prob: float | None, level: str = "image"):
    copy_paste = None
    if prob is not None:
        copy_paste = ImageCopyPaste(FaceFolder(faces, "celebamask_hq"), prob=prob)
    return P3MTrainDataset(
        root, "blurred_image", size=64, verify="quick", copy_paste=copy_paste,
        copy_paste_level=level,
    )  # fmt: skip


def test_image_level_pastes_into_the_face_and_keeps_the_crop(roots) -> None:
    root, faces = roots
    plain, pasted = _dataset(root, faces, None), _dataset(root, faces, 1.0)
    changed = 0
    for index in range(len(plain)):
        a, b = plain[index], pasted[index]
        torch.testing.assert_close(a["alpha"], b["alpha"], rtol=0, atol=0)  # same crop
        differs = (a["image"] - b["image"]).abs().sum(0) > 0
        changed += int(differs.any())
        # The composition loss sees F and B that match the pasted image.
        alpha = b["alpha"]
        composite = alpha * b["fg"] + (1 - alpha) * b["bg"]
        reference = alpha * a["fg"] + (1 - alpha) * a["bg"]
        assert (composite - b["image"]).abs().mean() <= (reference - a["image"]).abs().mean() + 0.02
    assert changed >= 2


def test_probability_zero_is_bit_identical_to_no_copy_paste(roots) -> None:
    root, faces = roots
    plain, never = _dataset(root, faces, None), _dataset(root, faces, 0.0)
    for index in range(len(plain)):
        a, b = plain[index], never[index]
        for key in ("image", "alpha", "trimap", "fg", "bg"):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_feature_level_carries_the_aligned_source_and_the_face_mask(roots) -> None:
    root, faces = roots
    dataset = _dataset(root, faces, 1.0, level="feature")
    plain = _dataset(root, faces, None)
    sample = dataset[0]
    torch.testing.assert_close(sample["image"], plain[0]["image"], rtol=0, atol=0)
    assert sample["cp_source"].shape == (3, 64, 64)
    assert sample["cp_mask"].shape == (1, 64, 64)
    assert set(np.unique(sample["cp_mask"].numpy())) <= {0.0, 1.0}
    assert sample["cp_mask"].sum() > 0


def _cfg(tmp: Path, root: Path, faces: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "data=synthetic",
                "trainer=cpu",
                "trainer.max_epochs=1",
                "callbacks.progress_bar=null",
                "validate_before=false",
                "test=false",
                *(f"data.synthetic.{k}={v}" for k, v in TINY.items()),
                "data.train_size=64",
                "data.batch_size=2",
                f"data.root={root}",
                *overrides,
            ],
        )
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp / "out")
        cfg.paths.root_dir = str(tmp)
        if cfg.data.get("copy_paste"):
            cfg.data.copy_paste.source.root = str(faces)
    return cfg


def _weights(cfg) -> dict[str, torch.Tensor]:
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    return torch.load(last, weights_only=True)["state_dict"]


@pytest.mark.slow
def test_icp_and_fcp_train_and_prob_zero_trains_identically(roots, tmp_path: Path) -> None:
    root, faces = roots
    train(plain := _cfg(tmp_path / "none", root, faces, "seed=3"))
    train(
        zero := _cfg(tmp_path / "zero", root, faces, "seed=3", "cp=icp", "data.copy_paste.prob=0")
    )
    a, b = _weights(plain), _weights(zero)
    for key, value in a.items():
        torch.testing.assert_close(value, b[key], rtol=0, atol=0, msg=key)
    icp = _cfg(tmp_path / "icp", root, faces, "seed=3", "cp=icp", "data.copy_paste.prob=1")
    train(icp)
    assert any(not torch.equal(a[k], v) for k, v in _weights(icp).items())
    fcp = _cfg(
        tmp_path / "fcp", root, faces, "seed=3", "cp=fcp", "model.fcp_start_epoch=0",
        "data.copy_paste.prob=1",
    )  # fmt: skip
    train(fcp)
    assert any(not torch.equal(a[k], v) for k, v in _weights(fcp).items())


@pytest.mark.slow
def test_icp_run_says_it_pastes_public_faces_and_panels_show_no_training_crop(
    roots, tmp_path: Path
) -> None:
    root, faces = roots
    cfg = _cfg(tmp_path, root, faces, "cp=icp", "data.copy_paste.prob=1", "data.val_split=1")
    train(cfg)
    out = Path(cfg.paths.output_dir)
    report = json.loads((out / "privacy_report.json").read_text())
    note = report["copy_paste"]
    assert note["level"] == "image" and note["prob"] == 1.0
    assert note["source"] == {"layout": "celebamask_hq", "root": str(faces)}
    assert "public celebrity faces" in note["note"] and "unobfuscated" in note["note"]
    privacy = json.loads((out / "metrics.json").read_text())["privacy"]
    assert privacy["copy_paste"] == note
    assert "P3M-CP pastes public celebrity faces unobfuscated" in privacy_text(privacy)
    # Panels come from the held-out images, never pasted into, each obfuscated inside its face
    # mask (where P3M-CP would paste).
    panels = report["sets"]["panels"]
    assert panels["images"] >= 1 and panels["counts"] == {"mask": panels["images"]}
    pngs = sorted((out / "panels").rglob("*.png"))
    assert pngs and all(p.name.startswith("train-heldout_") for p in pngs)
