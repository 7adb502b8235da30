"""Panels and W&B images of a face the detector misses, and the run's privacy report."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from skimage import data as skdata
from torch.utils.data import DataLoader, Dataset

from p3m_lightning.callbacks import ImagePanelLogger, finish_wandb, make_wandb_logger
from p3m_lightning.data.privacy import detect_faces
from p3m_lightning.methods.p3m_net.network import P3MNet
from p3m_lightning.normalization import normalize
from p3m_lightning.privacy_report import PrivacyReport
from p3m_lightning.task import MattingTask

SIZE = 256
FACE_BOX = (177, 67, 93, 93)
"""The astronaut's face (x, y, w, h) at 512 px, as the frontal Haar cascade finds it."""


def face_energy(image: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Mean absolute Laplacian of the grey image inside ``box`` (x, y, w, h): facial detail."""
    x, y, w, h = box
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_32F))[y : y + h, x : x + w].mean())


@pytest.fixture(scope="module")
def rotated() -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """The astronaut turned 90 degrees (the detector misses it), her matte and her face box."""
    image = cv2.resize(skdata.astronaut(), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    alpha = np.zeros((SIZE, SIZE), np.uint8)
    alpha[20:, 40:210] = 255  # roughly the astronaut, head to waist
    x, y, w, h = (v // 2 for v in FACE_BOX)
    assert len(detect_faces(image)) == 1
    turned, turned_alpha = np.ascontiguousarray(np.rot90(image)), np.rot90(alpha).copy()
    # rot90 (counter-clockwise) maps (row, col) to (SIZE - 1 - col, row).
    box = (y, SIZE - x - w, h, w)
    assert detect_faces(turned) == [], "the test needs a face the detector misses"
    return turned, turned_alpha, box


class _Whole(Dataset):
    """The turned astronaut as a whole evaluation image without face mask (like P3M-500-NP)."""

    def __init__(self, image: np.ndarray, alpha: np.ndarray) -> None:
        rgb = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0)[None]
        self.item = {
            "image": normalize(rgb)[0],
            "alpha": torch.from_numpy(alpha).float().div(255.0)[None],
            "trimap": torch.from_numpy(alpha)[None],
            "name": "astronaut",
        }

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> dict:
        return self.item


class _Data(pl.LightningDataModule):
    eval_set_names = ["P3M-500-NP"]

    def __init__(self, image: np.ndarray, alpha: np.ndarray) -> None:
        super().__init__()
        self.dataset = _Whole(image, alpha)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=1)


def _validate(tmp_path: Path, data: _Data, logger, **panel_kwargs) -> ImagePanelLogger:
    panels = ImagePanelLogger(num_images=1, output_dir=tmp_path, **panel_kwargs)
    report = PrivacyReport(tmp_path, policy={"on_no_face": panels.on_no_face})
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        logger=logger,
        callbacks=[panels, report],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    torch.manual_seed(0)
    trainer.validate(MattingTask(P3MNet()), datamodule=data, verbose=False)
    report.write(trainer)
    return panels


def test_fallback_hides_a_face_the_detector_misses_in_the_written_panel(rotated, tmp_path):
    image, alpha, box = rotated
    _validate(tmp_path, _Data(image, alpha), CSVLogger(tmp_path, name="csv"))
    (png,) = sorted((tmp_path / "panels").rglob("*.png"))
    shown = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)[:, :SIZE]
    clear = face_energy(image, box)
    assert clear > 5.0
    assert face_energy(shown, box) < 0.2 * clear
    report = json.loads((tmp_path / "privacy_report.json").read_text())
    assert report["sets"]["panels"]["counts"] == {"person": 1}
    assert report["sets"]["panels"]["fallback"] == ["P3M-500-NP/astronaut"]


def test_skip_writes_no_panel_and_is_reported(rotated, tmp_path) -> None:
    image, alpha, _ = rotated
    _validate(tmp_path, _Data(image, alpha), CSVLogger(tmp_path, name="csv"), on_no_face="skip")
    assert not list(tmp_path.glob("panels/**/*.png"))
    report = json.loads((tmp_path / "privacy_report.json").read_text())
    assert report["sets"]["panels"]["skipped"] == ["P3M-500-NP/astronaut"]


@pytest.mark.slow
def test_the_wandb_image_of_a_missed_face_is_obfuscated(rotated, tmp_path, monkeypatch) -> None:
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    image, alpha, box = rotated
    logger = make_wandb_logger(save_dir=tmp_path / "run", project="p3m-lightning-test")
    try:
        _validate(tmp_path / "run", _Data(image, alpha), logger)
    finally:
        finish_wandb()
    (run,) = sorted((tmp_path / "run" / "wandb").glob("offline-run-*"))
    (png,) = sorted((run / "files" / "media" / "images").rglob("*.png"))
    shown = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)[:, :SIZE]
    assert shown.shape == (SIZE, SIZE, 3)
    assert face_energy(shown, box) < 0.2 * face_energy(image, box)
