"""The privacy report of a run: how every face region obfuscated on the fly was found.

Datasets that obfuscate on the fly (B-training on normal portraits, ``P3M-500-NP-B``) put
``privacy`` (``mask``, ``detector``, ``person``, ``head`` or ``skipped``) into each sample; the
image panels record the same for every panel. `PrivacyReport` collects them per set, once per
image, over every process, and writes ``<run>/privacy_report.json``: counts per source, the
images handled by a fallback and the images skipped (never trained on, evaluated or written),
and, when the run pastes faces into its training images (P3M-CP), where those faces come from.
The counts also go to the run's loggers as ``privacy/<set>/<source>``, and into the run's
``metrics.json`` (`privacy_metrics`).
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch.distributed as dist

from p3m_lightning.atomic import write_bytes_atomic
from p3m_lightning.callbacks import ImagePanelLogger
from p3m_lightning.data.privacy import FALLBACKS, SOURCES


def describe_copy_paste(datamodule: Any) -> dict[str, Any] | None:
    """What P3M-CP pastes into the training images of ``datamodule``; None without P3M-CP.

    The pasted faces are not obfuscated: that is the method (the journal P3M-Net borrows face
    appearance from a public face set), and the report must say so.
    """
    copy_paste = getattr(datamodule, "copy_paste", None)
    if copy_paste is None:
        return None
    source = getattr(copy_paste, "source", None)
    layout = getattr(source, "layout", None)
    root = getattr(source, "root", None)
    faces = (
        "public celebrity faces (CelebAMask-HQ)"
        if layout == "celebamask_hq"
        else f"the faces of the source folder {root}"
    )
    return {
        "level": getattr(datamodule, "copy_paste_level", "image"),
        "prob": getattr(copy_paste, "prob", None),
        "source": {"layout": layout, "root": None if root is None else str(root)},
        "note": f"P3M-CP pastes {faces}, unobfuscated (as stored there), into the face region "
        "of training images by design: a B-trained model sees those faces. Panels show "
        "evaluation images only, which nothing is pasted into.",
    }


class PrivacyReport(pl.Callback):
    """Collect the ``privacy`` of every on-the-fly obfuscated sample; write the run's report.

    Args:
        output_dir: the run folder; the report is ``<output_dir>/privacy_report.json``.
        policy: the run's privacy settings, copied into the report as they are.
    """

    def __init__(self, output_dir: str | os.PathLike, policy: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.path = Path(output_dir) / "privacy_report.json"
        self.policy = dict(policy or {})
        self.sources: dict[str, dict[str, str]] = defaultdict(dict)
        self.copy_paste: dict[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Note what P3M-CP pastes, if the datamodule pastes anything."""
        self.copy_paste = describe_copy_paste(getattr(trainer, "datamodule", None))

    def _record(self, set_name: str, batch: Any) -> None:
        sources, names = batch.get("privacy"), batch.get("name")
        if sources is None or names is None or batch.get("padding") is not None:
            return
        for name, source in zip(names, sources, strict=True):
            self.sources[set_name].setdefault(str(name), str(source))

    @staticmethod
    def _set_name(pl_module: pl.LightningModule, stage: str, dataloader_idx: int) -> str:
        names = pl_module.set_names(stage) if hasattr(pl_module, "set_names") else []
        return names[dataloader_idx] if dataloader_idx < len(names) else str(dataloader_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Record the training samples' sources."""
        self._record("train", batch)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        """Record an evaluation set's sources."""
        if not trainer.sanity_checking:
            self._record(self._set_name(pl_module, "val", dataloader_idx), batch)

    def on_test_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        """Record an evaluation set's sources."""
        self._record(self._set_name(pl_module, "test", dataloader_idx), batch)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the report (again at the end of testing, with the test sets)."""
        self.write(trainer)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the report with everything recorded so far."""
        self.write(trainer)

    def _gathered(self) -> dict[str, dict[str, str]]:
        sets: dict[str, dict[str, str]] = defaultdict(dict)
        parts = [dict(self.sources)]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts = [None] * dist.get_world_size()
            dist.all_gather_object(parts, dict(self.sources))
        for part in parts:
            for set_name, names in (part or {}).items():
                for name, source in names.items():
                    sets[set_name].setdefault(name, source)
        return sets

    def report(self, trainer: pl.Trainer) -> dict[str, Any]:
        """The report's content: the policy, per set the counts, fallbacks and skips, and what
        P3M-CP pastes (None without it). A collective under DDP: call it on every process."""
        sets = self._gathered()
        for callback in trainer.callbacks:
            if isinstance(callback, ImagePanelLogger) and callback.sources:
                sets["panels"] = dict(callback.sources)
        summary = {}
        for set_name, names in sorted(sets.items()):
            counts = Counter(names.values())
            summary[set_name] = {
                "images": len(names),
                "counts": {
                    source: counts.get(source, 0) for source in SOURCES if counts.get(source)
                },
                "fallback": sorted(n for n, s in names.items() if s in FALLBACKS),
                "skipped": sorted(n for n, s in names.items() if s == "skipped"),
            }
        return {"policy": self.policy, "sets": summary, "copy_paste": self.copy_paste}

    def metrics(self, trainer: pl.Trainer) -> dict[str, Any]:
        """The ``privacy`` entry of ``metrics.json``: the policy, per data set (panels left out)
        its images and how many each source obfuscated (zeros included), and P3M-CP's note."""
        report = self.report(trainer)
        sets = {
            name: {"images": entry["images"], **{s: entry["counts"].get(s, 0) for s in SOURCES}}
            for name, entry in report["sets"].items()
            if name != "panels"
        }
        return {"policy": report["policy"], "sets": sets, "copy_paste": report["copy_paste"]}

    def write(self, trainer: pl.Trainer) -> None:
        """Write ``privacy_report.json`` and log the counts (global rank zero)."""
        report = self.report(trainer)
        if not trainer.is_global_zero or not (report["sets"] or report["copy_paste"]):
            return
        write_bytes_atomic(self.path, (json.dumps(report, indent=2) + "\n").encode())
        metrics = {
            f"privacy/{set_name}/{source}": float(count)
            for set_name, entry in report["sets"].items()
            for source, count in entry["counts"].items()
        }
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)


def privacy_metrics(trainer: pl.Trainer) -> dict[str, Any] | None:
    """`PrivacyReport.metrics` of the trainer's privacy report; None if it has none. A
    collective under DDP: call it on every process."""
    for callback in trainer.callbacks:
        if isinstance(callback, PrivacyReport):
            return callback.metrics(trainer)
    return None
