"""What recipe a run trains, as plain values: its record, a fingerprint, its departures.

Pure functions over the composed train config (no Lightning, no Hydra state). ``train.py``
writes all three into ``metrics.json``; the report keys its rows on the fingerprint, so that
runs of different recipes are never averaged together, and labels a row with its departures.

- `recipe_record`: every value that defines what is trained and how it is scored: the
  method, its network, loss, optimiser, scheduler and test strategy, the epochs, the batch
  plan, the training transform and crop, copy-paste, precision, gradient clipping and
  accumulation, the initialisation, the PPT training, F/B, and the model config's
  ``recipe.sources`` (where each value comes from) when it has them.
- `fingerprint`: a short stable hash of the record.
- `departures`: how a run leaves the published recipe of its method: the command-line
  overrides that touch a recipe value (not those that only say where data lives or how the
  run is executed), and what the config says beyond them (``from_scratch``, copy-paste, a
  precision other than float32, an evaluation-only run).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

TRAINER_KEYS = (
    "max_epochs",
    "max_steps",
    "min_epochs",
    "precision",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "accumulate_grad_batches",
    "overfit_batches",
    "limit_train_batches",
    "fast_dev_run",
)
"""Trainer settings that change what is learnt (devices, logging and the like do not; nor does
``sync_batchnorm``, which keeps BatchNorm on the recipe's batch under DDP)."""

DATA_KEYS = (
    "_target_",
    "synthetic",
    "train_size",
    "transform",
    "batch_size",
    "batch_size_per_device",
    "val_split",
    "fgbg",
    "copy_paste_level",
    "copy_paste",
    "eval_backgrounds",
    "generated_trimaps",
    "max_eval_images",
)
"""Data settings that change what is trained on or how it is scored (not where it lives)."""

NOT_FINGERPRINTED = ("ppt_train", "sources")
"""Record entries the fingerprint leaves out: the PPT training (B or N), which the report's
columns already key on, so that both trainings of one recipe share a row; and the sources,
which document the values rather than define them."""

OPERATIONAL = (
    "seed",
    "task_name",
    "tags",
    "paths",
    "logger",
    "callbacks",
    "hydra",
    "local",
    "plugins",
    "privacy",
    "validate_before",
    "test",
    "ckpt_path",
    "data.root",
    "data.num_workers",
    "data.normal_train_dir",
    "data.train_folders",
    "data.verify",
    "data.eval_sets",
    "data.copy_paste.source.root",
    "data.obfuscation_method",
    "data.on_no_face",
    "data.on_partial",
    "data.use_detector",
    "data.face_detector",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.accelerator",
    "trainer.strategy",
    "trainer.default_root_dir",
    "trainer.log_every_n_steps",
    "trainer.check_val_every_n_epoch",
    "trainer.num_sanity_val_steps",
    "trainer.enable_checkpointing",
    "trainer.enable_model_summary",
    "trainer.enable_progress_bar",
    "trainer.deterministic",
    "trainer.benchmark",
    "model.channels_last",
    # The published initialisation's file (recorded as the run's `init`).
    "model.net.encoder.weights_path",
    "model.net.encoder.pretrained",
    "model.net.pretrained_path",
)
"""Override keys (and everything under them) that say where data lives or how the run is
executed, not what it trains."""

CHOICES = ("experiment", "model", "trainer")
"""Config groups whose choice names the recipe (experiment, method) or how it runs (trainer:
its precision is judged from the composed value)."""

DERIVED = ("from_scratch", "cp", "train", "trainer.precision")
"""Keys whose departure is read from the composed config rather than from the overrides."""

FLOAT32 = ("32", "32-true")


def method_name(cfg: DictConfig) -> str:
    """The method a run trains: its model config's ``recipe.name``, else ``p3m_net``."""
    return str(OmegaConf.select(cfg, "recipe.name", default=None) or "p3m_net")


def _plain(node: Any) -> Any:
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


def recipe_record(cfg: DictConfig) -> dict[str, Any]:
    """Every value of ``cfg`` that defines the recipe a run trains and how it is scored.

    ``cfg.batch_plan`` (the effective batch and learning-rate scale ``train`` settles) and
    ``cfg.init`` (what the network was initialised from) are included when set.
    """
    model = _plain(cfg.get("model")) or {}
    model.pop("channels_last", None)
    data = cfg.get("data") or {}
    data_values = {k: _plain(data.get(k)) for k in DATA_KEYS}
    source = (data_values.get("copy_paste") or {}).get("source")
    if isinstance(source, dict):
        source.pop("root", None)  # where the faces live, not which faces
    trainer = cfg.get("trainer") or {}
    plan = _plain(cfg.get("batch_plan")) or {}
    record = {
        "method": method_name(cfg),
        "model": model,
        "trainer": {k: _plain(trainer.get(k)) for k in TRAINER_KEYS},
        "data": data_values,
        "batch": {
            k: plan[k] for k in ("recipe", "effective", "accumulate", "lr_scale") if k in plan
        },
        "init": cfg.get("init"),
        "from_scratch": bool(cfg.get("from_scratch")),
        "ppt_train": data.get("ppt_train") if cfg.get("ppt") else None,
        "sources": _plain(OmegaConf.select(cfg, "recipe.sources", default=None)),
    }
    if record["trainer"]["precision"] is not None:
        record["trainer"]["precision"] = str(record["trainer"]["precision"])
    return record


def fingerprint(record: dict[str, Any]) -> str:
    """A short stable hash of ``record`` (its `NOT_FINGERPRINTED` entries aside)."""
    kept = {k: v for k, v in record.items() if k not in NOT_FINGERPRINTED}
    text = json.dumps(kept, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _key(override: str) -> str:
    """The config key an override sets: ``model.optimizer.lr`` of ``++model.optimizer.lr=1``,
    ``data.transform.augment`` of ``data/transform/augment=photometric``."""
    return override.lstrip("+~").split("=", 1)[0].strip().replace("/", ".")


def _operational(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in OPERATIONAL)


def departures(cfg: DictConfig, overrides: Sequence[str]) -> list[str]:
    """How a run leaves the published recipe of its method, each as a setting (empty: none).

    Args:
        cfg: the composed train config.
        overrides: the run's command-line overrides (Hydra's ``hydra.overrides.task``).

    Returns:
        The overrides that touch a recipe value, in their order, except those of
        `OPERATIONAL` keys and the choices of `CHOICES` (``data=`` only when it leaves
        P3M-10k); then ``from_scratch=true``, ``cp=icp|fcp``, ``trainer.precision=<p>``
        (other than float32) and ``train=false (evaluates <checkpoint>)`` as the config says.
    """
    found = []
    for override in overrides:
        key = _key(override)
        if _operational(key) or key in DERIVED or key in CHOICES:
            continue
        if key == "data" and override.split("=", 1)[-1] == "p3m10k":
            continue
        found.append(override.lstrip("+"))
    if cfg.get("from_scratch"):
        found.append("from_scratch=true")
    level = OmegaConf.select(cfg, "data.copy_paste_level", default=None)
    if level:
        found.append("cp=icp" if level == "image" else "cp=fcp")
    precision = str(OmegaConf.select(cfg, "trainer.precision", default="32"))
    if precision not in FLOAT32:
        found.append(f"trainer.precision={precision}")
    if cfg.get("train") is False:
        ckpt_path = cfg.get("ckpt_path")
        found.append(f"train=false (evaluates {ckpt_path})" if ckpt_path else "train=false")
    return found
