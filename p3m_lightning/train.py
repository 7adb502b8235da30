"""``train(cfg)``: the training entry point behind ``train.py``, importable for tests."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from p3m_lightning.callbacks import finish_wandb

log = logging.getLogger(__name__)


def _instantiate_group(group: DictConfig | None) -> list[Any]:
    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def _scalar_metrics(results: list[dict[str, float]] | None) -> dict[str, float]:
    merged: dict[str, float] = {}
    for result in results or []:
        merged.update({k: float(v) for k, v in result.items()})
    return merged


def _metric(values: dict[str, float], name: str, metric: str) -> str:
    for prefix in ("test", "val"):
        key = f"{prefix}/{name}/{metric}"
        if key in values:
            return f"{values[key]:.4f}" if metric == "mse" else f"{values[key]:.2f}"
    return "-"


def _summary_table(before: dict[str, float], after: dict[str, float], sets: list[str]) -> str:
    header = ("test set", "SAD before", "SAD after", "MSE before", "MSE after")
    lines = [f"{header[0]:<16}" + "".join(f"{h:>12}" for h in header[1:])]
    for name in sets:
        cells = [_metric(d, name, m) for m in ("sad", "mse") for d in (before, after)]
        lines.append(f"{name:<16}" + "".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train (and evaluate) the configured task on the configured data.

    Writes into ``cfg.paths.output_dir``: ``config.yaml`` (the composed config),
    ``checkpoints/`` (best, last, and ``interrupted`` after SIGTERM or an error),
    ``metrics.json`` (metrics of the untrained and the trained model per test set) and, with
    the image-panel callback, ``panels/`` (face-obfuscated prediction panels).

    A W&B run, if any, is finished on every exit path, so multirun jobs never merge.

    Returns:
        The content of ``metrics.json``.
    """
    try:
        result = _train(cfg)
    except BaseException:
        finish_wandb(exit_code=1)
        raise
    finish_wandb()
    return result


def _train(cfg: DictConfig) -> dict[str, Any]:
    """The body of ``train``."""
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    datamodule: pl.LightningDataModule = instantiate(cfg.data)
    model: pl.LightningModule = instantiate(cfg.model)
    callbacks = _instantiate_group(cfg.get("callbacks"))
    loggers = _instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    before: dict[str, float] = {}
    if cfg.get("validate_before") and cfg.get("train") and not cfg.get("ckpt_path"):
        log.info("Evaluating the untrained model")
        before = _scalar_metrics(trainer.validate(model, datamodule=datamodule, verbose=False))
    if cfg.get("train"):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    after: dict[str, float] = {}
    if cfg.get("test"):
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
        after = _scalar_metrics(
            trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)
        )
    else:
        after = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}

    result = {
        "task_name": cfg.get("task_name"),
        "ppt": OmegaConf.to_container(cfg.ppt, resolve=True) if cfg.get("ppt") else None,
        "ppt_train": cfg.data.get("ppt_train"),
        "encoder": OmegaConf.to_container(cfg.model.net.encoder, resolve=True),
        "seed": cfg.get("seed"),
        "before": before,
        "after": after,
        "best_checkpoint": getattr(trainer.checkpoint_callback, "best_model_path", None),
    }
    if trainer.is_global_zero:
        (output_dir / "metrics.json").write_text(json.dumps(result, indent=2))
        sets = list(getattr(datamodule, "eval_set_names", []))
        print("\n" + _summary_table(before, after, sets))
        print(f"\nOutputs in {output_dir}: config.yaml, metrics.json, checkpoints/, panels/")
    return result
