"""Experiment tracking: face-obfuscated prediction panels, and W&B runs that need no account.

- `ImagePanelLogger` shows what the model does on a few validation images of each evaluation
  set: image | true alpha | predicted alpha | error. The image is face-obfuscated unless
  privacy is waived explicitly, so portraits of people never reach a dashboard or a results
  folder unblurred.
- `make_wandb_logger` builds a `WandbLogger` that runs offline when no API key is found, so a
  fresh checkout (or a cluster node without internet) never prompts for a login or hangs.
- `finish_wandb` ends the current W&B run; the training entry point calls it on every exit
  path so that the jobs of a Hydra multirun never merge into one run.
"""

from __future__ import annotations

import logging
import netrc
import os
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_only

from p3m_lightning.data.privacy import DETECTORS, ON_NO_FACE, ON_PARTIAL
from p3m_lightning.imageio import alpha_to_uint8, write_png_atomic
from p3m_lightning.panels import DisplayPrivacy, error_map, gray_to_rgb, shown_photo

log = logging.getLogger(__name__)

DEFAULT_WANDB_HOST = "https://api.wandb.ai"


def _safe_name(name: str) -> str:
    """A file-name-safe version of a sample name (names may hold path separators)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


class ImagePanelLogger(pl.Callback):
    """Log prediction panels of the first images of every validation and test set.

    Each panel is ``image | true alpha | predicted alpha | |error|`` side by side, the error
    in the inferno colour map (black = exact), shrunk to at most ``max_height`` pixels high.
    At the end of each validation or test run the panels go to every `WandbLogger` of the
    trainer (key ``val/<set>/panels`` or ``test/<set>/panels``, one caption per image) and,
    when ``output_dir`` is set, into ``<output_dir>/panels/<folder>/<set>_<name>.png``, the
    folder ``epoch_<e>`` during training, ``validate_step_<step>`` for a standalone
    validation and ``test_step_<step>`` for a test run (so the untrained model's panels are
    not overwritten). Sanity-check batches are skipped; only global rank zero builds and logs.

    Args:
        num_images: panels per set and run (its first batches).
        allow_unobfuscated: show the images as they are. By default each image is obfuscated
            first, failing closed (`p3m_lightning.data.privacy.find_face_region`): inside the
            batch's ``face_mask`` (or ``privacy_mask``, where the dataset obfuscated on the
            fly) when it marks a face, else around the faces the detector finds together with
            the ``on_partial`` region, else by the ``on_no_face`` fallback on the batch's true
            alpha; a ``skip`` writes no panel.
        obfuscation_method: ``blur``, ``mosaic`` or ``fill`` (see ``obfuscate_faces``).
        on_no_face: ``person``, ``head``, ``skip`` or ``error`` (see ``find_face_region``).
        use_detector: try the face detector before the fallback.
        face_detector: which detector, ``mtcnn`` or ``haar`` (see ``detect_faces``).
        on_partial: ``person``, ``head`` or ``faces``: what is obfuscated besides the faces
            the detector finds (see ``find_face_region``).
        output_dir: folder to write PNG panels under; None writes none.
        max_height: largest panel height in pixels, to keep logs small.
    """

    def __init__(
        self,
        num_images: int = 2,
        allow_unobfuscated: bool = False,
        obfuscation_method: str = "blur",
        on_no_face: str = "person",
        use_detector: bool = True,
        on_partial: str = "person",
        face_detector: str = "mtcnn",
        output_dir: str | os.PathLike | None = None,
        max_height: int = 256,
    ) -> None:
        super().__init__()
        if on_no_face not in ON_NO_FACE:
            raise ValueError(f"on_no_face must be one of {ON_NO_FACE}, got {on_no_face!r}")
        if on_partial not in ON_PARTIAL:
            raise ValueError(f"on_partial must be one of {ON_PARTIAL}, got {on_partial!r}")
        if face_detector not in DETECTORS:
            raise ValueError(f"face_detector must be one of {DETECTORS}, got {face_detector!r}")
        self.num_images = num_images
        self.allow_unobfuscated = allow_unobfuscated
        self.obfuscation_method = obfuscation_method
        self.on_no_face = on_no_face
        self.use_detector = use_detector
        self.on_partial = on_partial
        self.face_detector = face_detector
        self.sources: dict[str, str] = {}
        """``<set>/<image name>`` -> how its panel's face region was found (privacy report)."""
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.max_height = max_height
        self._panels: dict[str, list[tuple[str, np.ndarray]]] = {}

    def build_panel(
        self, batch: dict[str, Any], pred: torch.Tensor
    ) -> tuple[np.ndarray | None, str]:
        """The panel of the first image of ``batch`` and its predicted alpha.

        Args:
            batch: evaluation batch: ``image`` ``(B, 3, H, W)`` ImageNet-normalised, ``alpha``
                ``(B, 1, H, W)`` in [0, 1], optionally ``face_mask`` or ``privacy_mask``
                ``(B, 1, H, W)`` nonzero on faces.
            pred: ``(H, W)`` predicted alpha in [0, 1].

        Returns:
            ``(h, 4 * w, 3)`` uint8 RGB, ``h = min(H, max_height)`` (None when the face region
            could not be established and ``on_no_face`` is ``skip``), and how the face region
            was found (``unobfuscated`` when privacy was waived).
        """
        privacy = DisplayPrivacy(
            self.allow_unobfuscated,
            self.obfuscation_method,
            self.on_no_face,
            self.use_detector,
            self.on_partial,
            self.face_detector,
        )
        image, source = shown_photo(batch, privacy)
        if image is None:
            return None, source
        alpha = batch["alpha"][0, 0].detach().float().cpu().numpy()
        pred_np = pred.detach().float().cpu().numpy()
        panel = np.concatenate(
            [
                image,
                gray_to_rgb(alpha_to_uint8(alpha)),
                gray_to_rgb(alpha_to_uint8(pred_np)),
                error_map(pred_np, alpha),
            ],
            axis=1,
        )
        height, width = panel.shape[:2]
        if height > self.max_height:
            scale = self.max_height / height
            panel = cv2.resize(
                panel, (max(1, round(width * scale)), self.max_height), interpolation=cv2.INTER_AREA
            )
        return panel, source

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start collecting this validation run's panels."""
        self._panels = {}

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start collecting this test run's panels."""
        self._panels = {}

    def _collect(
        self,
        stage: str,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or batch_idx >= self.num_images:
            return
        # A module whose evaluation step returns no alpha tensor has nothing to show.
        if not isinstance(outputs, torch.Tensor):
            return
        names = pl_module.set_names(stage) if hasattr(pl_module, "set_names") else []
        set_name = names[dataloader_idx] if dataloader_idx < len(names) else str(dataloader_idx)
        sample = batch.get("name")
        sample_name = str(sample[0]) if sample else f"{batch_idx:04d}"
        panel, source = self.build_panel(batch, outputs)
        self.sources[f"{set_name}/{sample_name}"] = source
        if panel is not None:
            self._panels.setdefault(set_name, []).append((sample_name, panel))

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Build the panel of one of the first ``num_images`` images of each validation set."""
        self._collect("val", trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Build the panel of one of the first ``num_images`` images of each test set."""
        self._collect("test", trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Send the collected panels to the W&B loggers and the output folder."""
        if trainer.state.fn == TrainerFn.FITTING:
            self._flush(trainer, "val", f"epoch_{trainer.current_epoch:03d}")
        else:
            self._flush(trainer, "val", f"validate_step_{trainer.global_step:06d}")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Send the collected test panels to the W&B loggers and the output folder."""
        self._flush(trainer, "test", f"test_step_{trainer.global_step:06d}")

    def _flush(self, trainer: pl.Trainer, stage: str, folder: str) -> None:
        if not self._panels:
            return
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                for set_name, items in self._panels.items():
                    logger.log_image(
                        key=f"{stage}/{set_name}/panels",
                        images=[panel for _, panel in items],
                        caption=[name for name, _ in items],
                        step=trainer.global_step,
                    )
        if self.output_dir is not None:
            target = self.output_dir / "panels" / folder
            target.mkdir(parents=True, exist_ok=True)
            for set_name, items in self._panels.items():
                for name, panel in items:
                    write_png_atomic(
                        target / f"{_safe_name(set_name)}_{_safe_name(name)}.png", panel
                    )
        self._panels = {}


def find_wandb_api_key() -> str | None:
    """The W&B API key this process would log in with, or None.

    Looks where ``wandb`` looks, without importing it: ``WANDB_API_KEY``, then the netrc file
    (``$NETRC`` or ``~/.netrc``, as ``wandb login`` writes it) entry of the W&B host
    (``WANDB_BASE_URL``, default ``api.wandb.ai``).
    """
    key = os.environ.get("WANDB_API_KEY")
    if key:
        return key
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_WANDB_HOST).netloc
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc").expanduser()
    if not host or not path.is_file():
        return None
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (netrc.NetrcParseError, OSError):
        # wandb itself ignores an unreadable netrc; it would then prompt, which we must avoid.
        return None
    return entry[2] if entry and entry[2] else None


def make_wandb_logger(
    *,
    save_dir: str | os.PathLike,
    offline: bool | None = None,
    tags: Any = (),
    extra_tags: Any = (),
    **kwargs: Any,
) -> WandbLogger:
    """A `WandbLogger` that logs offline when there is no API key, instead of prompting.

    Any W&B run still open in this process (a previous Hydra multirun job's, which did not
    end cleanly) is finished first: Lightning would otherwise log into it.

    Args:
        save_dir: folder of the run; W&B writes ``<save_dir>/wandb/<run>/``.
        offline: True or False forces the mode; None (default) is offline exactly when
            `find_wandb_api_key` finds no key (and ``WANDB_MODE`` is not ``disabled``).
        tags: run tags (e.g. the experiment's ``tags``).
        extra_tags: more tags, appended (e.g. encoder name and seed).
        **kwargs: passed to `WandbLogger` and on to ``wandb.init`` (project, group, name,
            log_model, ...).

    Returns:
        The logger; the run itself starts on first use.
    """
    if offline is None:
        offline = find_wandb_api_key() is None and os.environ.get("WANDB_MODE") != "disabled"
    save_dir = Path(save_dir)
    # wandb falls back to a temporary folder when ``dir`` does not exist.
    save_dir.mkdir(parents=True, exist_ok=True)
    if offline:
        # Set before any wandb call, not only at run start as WandbLogger does, so that nothing
        # in this process (artifacts, a later logger) tries to log in.
        os.environ.setdefault("WANDB_MODE", "offline")
        if rank_zero_only.rank == 0:
            log.info(
                "W&B: no API key, logging offline to %s; sync later with `wandb sync %s`",
                save_dir / "wandb",
                save_dir / "wandb" / "offline-run-*",
            )
    finish_wandb()
    all_tags = [str(t) for t in (*tags, *extra_tags)]
    return WandbLogger(save_dir=str(save_dir), offline=offline, tags=all_tags or None, **kwargs)


def finish_wandb(exit_code: int = 0) -> None:
    """Finish the current W&B run, if any, marking it failed for a nonzero ``exit_code``.

    A no-op (and no ``wandb`` import) in a process that never used W&B.
    """
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)
