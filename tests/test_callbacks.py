"""Prediction panels: faces obfuscated by default, PNGs on disk, and the Hydra entries."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from skimage import data as skdata
from torch.utils.data import DataLoader, Dataset

from p3m_lightning.callbacks import ImagePanelLogger, make_wandb_logger
from p3m_lightning.data.privacy import detect_faces
from p3m_lightning.methods.p3m_net.network import P3MNet
from p3m_lightning.normalization import normalize
from p3m_lightning.task import MattingTask

CONF = Path(__file__).resolve().parents[1] / "conf"
SIZE = 256


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """A real frontal face, 256 x 256 (a multiple of 32, as the network needs)."""
    image = cv2.resize(skdata.astronaut(), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    assert len(detect_faces(image)) == 1, "the test image must show a detectable face"
    return image


def _batch(image: np.ndarray, face_mask: np.ndarray | None = None) -> dict:
    """One evaluation batch as the datamodule makes it: /255, then ImageNet-normalised."""
    rgb = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0)[None]
    alpha = torch.zeros(1, 1, *image.shape[:2])
    alpha[..., 40:, 60:200] = 1.0
    batch = {"image": normalize(rgb), "alpha": alpha, "name": ["astronaut"]}
    if face_mask is not None:
        batch["face_mask"] = torch.from_numpy(face_mask)[None, None]
    return batch


def _image_part(panel: np.ndarray, width: int = SIZE) -> np.ndarray:
    return np.ascontiguousarray(panel[:, :width])


def test_panel_layout(astronaut: np.ndarray) -> None:
    batch = _batch(astronaut)
    pred = batch["alpha"][0, 0].clone()
    pred[:, :100] = 0.5
    panel = ImagePanelLogger(allow_unobfuscated=True).build_panel(batch, pred)[0]
    assert panel.dtype == np.uint8 and panel.shape == (SIZE, 4 * SIZE, 3)
    np.testing.assert_array_equal(_image_part(panel), astronaut)
    np.testing.assert_array_equal(panel[:, SIZE : 2 * SIZE, 0], batch["alpha"][0, 0].numpy() * 255)
    assert panel[10, 2 * SIZE + 50, 0] == 128  # predicted alpha 0.5
    error = panel[:, 3 * SIZE :]
    assert error[10, 50].sum() > error[10, 150].sum()  # error 0.5 is brighter than 0

    small = ImagePanelLogger(max_height=64).build_panel(batch, pred)[0]
    assert small.shape == (64, 4 * 64, 3)


def test_faces_are_obfuscated_by_default(astronaut: np.ndarray) -> None:
    (x, y, w, h) = detect_faces(astronaut)[0]
    batch = _batch(astronaut)
    pred = batch["alpha"][0, 0]

    shown = _image_part(ImagePanelLogger().build_panel(batch, pred)[0])
    assert detect_faces(shown) == []
    face_change = np.abs(shown[y : y + h, x : x + w].astype(int) - astronaut[y : y + h, x : x + w])
    assert face_change.mean() > 5.0
    # The detector may have missed a face: the whole person goes too, the rest stays.
    person = batch["alpha"][0, 0].numpy() > 0
    assert np.abs(shown[person].astype(int) - astronaut[person]).mean() > 5.0
    np.testing.assert_array_equal(shown[:, :40], astronaut[:, :40])  # left of the person
    faces_only = ImagePanelLogger(on_partial="faces").build_panel(batch, pred)[0]
    np.testing.assert_array_equal(_image_part(faces_only)[-20:], astronaut[-20:])

    waived = _image_part(ImagePanelLogger(allow_unobfuscated=True).build_panel(batch, pred)[0])
    assert len(detect_faces(waived)) == 1


def test_batch_face_mask_is_used(astronaut: np.ndarray) -> None:
    (x, y, w, h) = detect_faces(astronaut)[0]
    mask = np.zeros(astronaut.shape[:2], np.uint8)
    mask[y : y + h, x : x + w] = 255
    batch = _batch(astronaut, mask)
    shown = _image_part(
        ImagePanelLogger(obfuscation_method="fill").build_panel(batch, batch["alpha"][0, 0])[0]
    )
    inside = shown[mask > 0]
    assert (inside == inside[0]).all()  # one solid colour over exactly the mask
    np.testing.assert_array_equal(shown[mask == 0], astronaut[mask == 0])


def test_an_empty_batch_face_mask_is_not_trusted(astronaut: np.ndarray) -> None:
    (x, y, w, h) = detect_faces(astronaut)[0]
    batch = _batch(astronaut, np.zeros(astronaut.shape[:2], np.uint8))
    panel, source = ImagePanelLogger().build_panel(batch, batch["alpha"][0, 0])
    assert source == "detector"
    shown = _image_part(panel)
    assert detect_faces(shown) == []
    change = np.abs(shown[y : y + h, x : x + w].astype(int) - astronaut[y : y + h, x : x + w])
    assert change.mean() > 5.0


class _Portraits(Dataset):
    """The astronaut as training crop and as named whole evaluation image."""

    def __init__(self, image: np.ndarray, train: bool) -> None:
        batch = _batch(cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA))
        item = {
            "image": batch["image"][0],
            "alpha": batch["alpha"][0, :, :64, :64],
            "trimap": torch.full((1, 64, 64), 128, dtype=torch.uint8),
        }
        if train:
            item.update(fg=item["image"], bg=torch.zeros_like(item["image"]))
            self.items = [item, item]
        else:
            self.items = [{**item, "name": f"face/{i}"} for i in range(3)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class _Data(pl.LightningDataModule):
    eval_set_names = ["P3M-500-NP"]

    def __init__(self, image: np.ndarray) -> None:
        super().__init__()
        self.image = image

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Portraits(self.image, train=True), batch_size=2)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Portraits(self.image, train=False), batch_size=1)


@pytest.mark.slow
def test_panels_written_as_png_with_csv_logger(astronaut: np.ndarray, tmp_path: Path) -> None:
    panels = ImagePanelLogger(num_images=2, output_dir=tmp_path)
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        logger=CSVLogger(tmp_path, name="csv"),
        callbacks=[panels],
        max_epochs=1,
        limit_train_batches=1,
        num_sanity_val_steps=2,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    task = MattingTask(P3MNet())
    data = _Data(astronaut)
    trainer.validate(task, datamodule=data, verbose=False)
    trainer.fit(task, datamodule=data)

    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert written == [
        "panels/epoch_000/P3M-500-NP_face_0.png",
        "panels/epoch_000/P3M-500-NP_face_1.png",
        "panels/validate_step_000000/P3M-500-NP_face_0.png",
        "panels/validate_step_000000/P3M-500-NP_face_1.png",
    ]
    png = cv2.imread(str(tmp_path / written[0]), cv2.IMREAD_UNCHANGED)
    assert png.shape == (64, 4 * 64, 3)


def test_hydra_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    overrides = [
        "experiment=ppt_bb",
        "model=p3m_timm",
        "callbacks=image_panels",
        "logger=[csv,wandb]",
        f"paths.output_dir={tmp_path}",
        "seed=7",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    panels = instantiate(cfg.callbacks.image_panels)
    assert isinstance(panels, ImagePanelLogger)
    assert not panels.allow_unobfuscated and panels.output_dir == tmp_path

    logger = instantiate(cfg.logger.wandb)  # creates no run until first use
    assert isinstance(logger, WandbLogger) and not logger._offline
    init = logger._wandb_init
    assert (init["project"], init["group"], init["name"]) == (
        "p3m-lightning",
        "ppt_bb",
        "ppt_bb-resnet50-s7",
    )
    assert init["tags"] == ["ppt_bb", "B:B", "train:B", "resnet50", "seed=7"]
    assert init["dir"] == str(tmp_path)


def test_offline_without_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert make_wandb_logger(save_dir=tmp_path / "run")._offline
    assert (tmp_path / "run").is_dir()
    assert not make_wandb_logger(save_dir=tmp_path, offline=False)._offline
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert not make_wandb_logger(save_dir=tmp_path)._offline
