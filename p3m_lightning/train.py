"""``train(cfg)``: the training entry point behind ``train.py``, importable for tests.

It keeps runs on the published recipe where the configuration asks for it (`check_recipe`,
`batch_plan`), trains, and tests the model of the LAST epoch on every test set: that is what
the paper trains and what a run's headline figures are. A best checkpoint, if a validation
split is held out from the training images (``data.val_split``), is chosen on that split only,
and tested as a second, separately named figure. No checkpoint is ever chosen on a test set.
``train=false`` evaluates the checkpoint ``ckpt_path`` names instead, and says so. Every run
records its recipe, the recipe's fingerprint and how it departs from the published one
(`p3m_lightning.recipe`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

from p3m_lightning.callbacks import finish_wandb
from p3m_lightning.evaluation import write_per_image
from p3m_lightning.models.checkpoint import load_weights
from p3m_lightning.models.encoders import loaded_backbone
from p3m_lightning.plugins import import_plugins
from p3m_lightning.privacy_report import privacy_metrics
from p3m_lightning.recipe import departures, fingerprint, method_name, recipe_record
from p3m_lightning.requeue import requeue_on_signal, resume_checkpoint

log = logging.getLogger(__name__)

RECIPE_BATCH = 8
"""The published recipe's batch (docs/p3m-net.md §5)."""

IMAGENET_ENV = "P3M_IMAGENET_WEIGHTS"
"""Environment variable the model configs read for the encoder's local ImageNet weights."""

_DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
"""Variables Lightning's DDP launcher sets in the launching process."""

EVALUABLE_PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed", "16", "bf16")
"""Training precisions whose network evaluates in float32 (Lightning's ``16`` and ``bf16``
are the mixed ones): the other ``-true`` precisions keep the weights themselves in bfloat16,
float16 or float64."""


class ConfigError(Exception):
    """A configuration that would leave the recipe it names; the message says what to set."""


def _instantiate_group(group: DictConfig | None) -> list[Any]:
    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def _test(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    ckpt_path: str | None = None,
) -> dict[str, float]:
    """Test ``model`` on every test set; ``{"test/<set>/<metric>": mean}`` in float64, as the
    task computed them (the same figures ``eval.py`` computes for the checkpoint).

    A set also gets ``test/<set>/n_images``, the images scored.
    """
    trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    return {
        f"test/{name}/{metric}": value
        for name, values in model.results.get("test", {}).items()
        for metric, value in values.items()
    }


def encoder_init(cfg: DictConfig, net: torch.nn.Module | None = None) -> str:
    """How the network starts: ``stages:<checkpoints>`` (a staged recipe's ``init_from``),
    ``imagenet:<file>``, ``imagenet:hub``, ``scratch`` or ``random``.

    The ImageNet file is ``model.net.encoder.weights_path`` (P3M-Net) or
    ``model.net.pretrained_path`` (the other methods' backbones). ``random`` is an encoder with
    neither ImageNet weights nor a declared ``from_scratch=true``. Given the built ``net``,
    an ImageNet file says what it gave: ``imagenet:<file> (backbone 265/265 tensors)``.
    """
    encoder = OmegaConf.select(cfg, "model.net.encoder") or {}
    path = encoder.get("weights_path") or OmegaConf.select(cfg, "model.net.pretrained_path")
    stages = OmegaConf.select(cfg, "model.init_from")
    if stages:
        # A staged recipe: the parts start from earlier stages (which started from ImageNet).
        return "stages:" + ",".join(str(s.get("checkpoint")) for s in stages)
    loaded = loaded_backbone(net) if net is not None else None
    if loaded is not None:
        return loaded.describe()
    if path:
        return f"imagenet:{path}"
    if encoder.get("pretrained"):
        return "imagenet:hub"
    return "scratch" if cfg.get("from_scratch") else "random"


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def check_recipe(cfg: DictConfig) -> str:
    """Stop before any work when a command would silently leave the recipe it names.

    - Evaluation is float32 (what ``metrics.json`` records): a ``-true`` precision other than
      float32, which keeps the weights themselves in it, is refused.
    - The quickstart recipe (``recipe_kind: quickstart``: lr 5e-4, 12 epochs, small crops) is
      for the embedded synthetic data only, whatever the run is called: on other data a
      recipe must be chosen.
    - ``ckpt_path`` names an existing file; ``train=false`` (evaluate only) needs one, unless
      ``test=false`` too (the run then only prepares the data).
    - A PPT run starts from ImageNet weights, as the published recipe does, unless a random
      start is declared with ``from_scratch=true`` (an evaluation-only run takes its weights
      from ``ckpt_path``).

    Returns:
        The network's initialisation (`encoder_init`), ``checkpoint:<file>`` for an
        evaluation-only run.

    Raises:
        ConfigError: naming the settings that fix it.
    """
    precision = str(OmegaConf.select(cfg, "trainer.precision", default="32"))
    if precision not in EVALUABLE_PRECISIONS:
        raise ConfigError(
            f"trainer.precision={precision} keeps the network's weights themselves in that "
            "precision, and every test and validation figure of this project is computed in "
            "float32 (metrics.json records it): such a run would stop at its first "
            "evaluation. Train with trainer.precision=bf16-mixed (what trainer=gpu sets), "
            "16-mixed or 32-true."
        )
    if cfg.get("recipe_kind") == "quickstart" and cfg.data.get("synthetic") is None:
        raise ConfigError(
            "the quickstart recipe (lr 5e-4, 12 epochs, small crops) is made for the embedded "
            "synthetic data, not for P3M-10k. Choose the published recipe: "
            "`python train.py experiment=ppt_b data.root=...` (train on blurred images) or "
            "`experiment=ppt_n` (normal images); or drop data=p3m10k for the quickstart."
        )
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path and not Path(ckpt_path).is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path}: no such file. Give an existing checkpoint, e.g. "
            "<run>/checkpoints/last.ckpt."
        )
    if not cfg.get("train"):
        if cfg.get("test") and not ckpt_path:
            raise ConfigError(
                "train=false evaluates a trained checkpoint, and no ckpt_path names one: give "
                "ckpt_path=<run>/checkpoints/last.ckpt (or a published file of the configured "
                "model), or drop train=false. The untrained network's figures are `before` in "
                "a training run's metrics.json."
            )
        return f"checkpoint:{ckpt_path}" if ckpt_path else encoder_init(cfg)
    init = encoder_init(cfg)
    if cfg.get("ppt") and init == "random" and OmegaConf.select(cfg, "model.net.encoder") is None:
        raise ConfigError(
            f"experiment {cfg.get('task_name')} is the published recipe of "
            f"{method_name(cfg)}, which starts from ImageNet weights, and none are set. Give a "
            "local file of its backbone with `model.net.pretrained_path=/path/weights.pth` "
            f"(which file: conf/model/{method_name(cfg)}.yaml and docs/methods/), or say "
            "`from_scratch=true` for a deliberate random start (the run is tagged as such)."
        )
    if cfg.get("ppt") and init == "random":
        raise ConfigError(
            f"experiment {cfg.get('task_name')} is the published recipe, which starts from "
            "ImageNet weights, and none are set. Give a local file with "
            "`model.net.encoder.weights_path=/path/resnet34.pth` (a torchvision ResNet-34 "
            f"state dict or r34mp_pretrained_imagenet.pth.tar) or `export {IMAGENET_ENV}=...`, "
            "or download them with `model.net.encoder.pretrained=true` (online). For a "
            "deliberate random start, say `from_scratch=true` (the run is tagged as such)."
        )
    return init


@dataclass(frozen=True)
class BatchPlan:
    """How the recipe's batch is split over devices and accumulation steps.

    Attributes:
        recipe: the batch the recipe asks for (``data.batch_size``).
        per_device: the batch each process loads per step.
        world_size: processes (devices x nodes).
        accumulate: gradient accumulation steps.
        effective: ``per_device * world_size * accumulate``, the batch of one optimiser step.
        lr_scale: learning-rate factor applied (1 unless a larger batch was opted into).
    """

    recipe: int
    per_device: int
    world_size: int
    accumulate: int
    effective: int
    lr_scale: float


def batch_plan(
    recipe: int, world_size: int, accumulate: int = 1, per_device: int | None = None
) -> BatchPlan:
    """Split the recipe's batch over ``world_size`` processes and ``accumulate`` steps.

    By default the effective batch stays ``recipe``: each process loads
    ``recipe / (world_size * accumulate)`` samples. ``per_device`` opts into another effective
    batch explicitly; the learning rate then follows the linear scaling rule
    (``effective / recipe``), and the plan records it.

    Raises:
        ConfigError: the recipe's batch does not divide, and no ``per_device`` was given.
    """
    shards = world_size * accumulate
    if per_device is None:
        if recipe % shards:
            raise ConfigError(
                f"the recipe's batch of {recipe} does not split over {world_size} process(es) x "
                f"{accumulate} accumulation step(s). Use a device count that divides it, or opt "
                "into another effective batch with data.batch_size_per_device=<n> (the learning "
                "rate is then scaled linearly, and the run records it)."
            )
        return BatchPlan(recipe, recipe // shards, world_size, accumulate, recipe, 1.0)
    effective = per_device * shards
    return BatchPlan(recipe, per_device, world_size, accumulate, effective, effective / recipe)


def _summary_table(before: dict[str, float], after: dict[str, float], sets: list[str]) -> str:
    def cell(values: dict[str, float], name: str, metric: str) -> str:
        key = f"test/{name}/{metric}"
        if key not in values:
            return "-"
        return f"{values[key]:.4f}" if metric == "mse" else f"{values[key]:.2f}"

    header = ("test set", "SAD before", "SAD after", "MSE before", "MSE after")
    lines = [f"{header[0]:<16}" + "".join(f"{h:>12}" for h in header[1:])]
    for name in sets:
        cells = [cell(d, name, m) for m in ("sad", "mse") for d in (before, after)]
        lines.append(f"{name:<16}" + "".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)


def run_overrides() -> list[str] | None:
    """The command-line overrides of this Hydra run or multirun job; None outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return list(HydraConfig.get().overrides.task)


def relaunch_this_job_only() -> None:
    """Make the processes Lightning starts for DDP re-run this Hydra multirun job, not the sweep.

    Lightning starts DDP ranks 1..N-1 by running the command line again (with
    ``hydra.run.dir`` set to the run folder): in a multirun that command is the whole sweep.
    Inside a multirun job, the command line becomes this job's own overrides, and the run
    folder this job's folder, so every rank trains this job. A no-op outside a multirun job.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train (and test) the configured task on the configured data.

    Writes into ``cfg.paths.output_dir``: ``config.yaml`` (the composed config),
    ``checkpoints/`` (``last``, ``interrupted`` after SIGTERM or an error, and the best on the
    held-out split when there is one), ``metrics.json``, ``per_image.csv`` (every test image's
    values, the headline model) and, with the image-panel callback,
    ``panels/`` (face-obfuscated prediction panels).

    A W&B run, if any, is finished on every exit path, so multirun jobs never merge. A folder
    that already holds ``last`` or ``interrupted`` (a requeued job, a rerun) resumes from it,
    unless ``ckpt_path`` is set; inside a submitit job, the requeue signal first checkpoints
    (`p3m_lightning.requeue`).

    Returns:
        The content of ``metrics.json``: ``after`` (the headline: test metrics of the last
        epoch, or of ``evaluated_checkpoint`` with ``train=false``), ``after_best_on_heldout``
        (test metrics of the checkpoint chosen on the held-out split, or None), ``before``
        (the untrained model's test metrics), ``resumed_from`` (the folder's checkpoint
        training resumed from, or None), ``privacy`` (per set obfuscated on the fly), and the
        recipe as run: ``init``, ``batch``, ``precision``, ``sync_batchnorm``, ``heldout``,
        ``recipe`` (`recipe_record`), ``recipe_fingerprint``, ``departures`` (how it leaves the
        published recipe) and the run's ``overrides`` (None outside Hydra).

    Raises:
        ConfigError: a command that would leave its recipe (`check_recipe`, `batch_plan`).
    """
    relaunch_this_job_only()
    launcher_env = {name: os.environ.get(name) for name in _DDP_ENV}
    try:
        with requeue_on_signal():
            result = _train(cfg)
    except BaseException:
        finish_wandb(exit_code=1)
        raise
    finally:
        # The next job of a multirun must start its own DDP processes: it must neither reuse
        # this job's process group (its other ranks have exited) nor see the variables
        # Lightning's launcher set, which would make it wait for ranks no one starts.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for name, value in launcher_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    finish_wandb()
    return result


def _train(cfg: DictConfig) -> dict[str, Any]:
    """The body of ``train``."""
    import_plugins(cfg.get("plugins"))
    init = check_recipe(cfg)
    overrides = run_overrides()
    leaves = departures(cfg, overrides or [])
    if leaves:
        log.warning(
            "this run leaves the published recipe of %s: %s", method_name(cfg), "; ".join(leaves)
        )
    if init == "scratch":
        with open_dict(cfg):
            cfg.tags = [*cfg.get("tags", []), "from_scratch"]
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    datamodule: pl.LightningDataModule = instantiate(cfg.data)
    callbacks = _instantiate_group(cfg.get("callbacks"))
    trainer_overrides: dict[str, Any] = {}  # trainer overrides
    if not getattr(datamodule, "val_set_names", None):
        # Nothing to select on but the test sets, which must never choose a checkpoint; and
        # no validation loop to run (Lightning would warn about the empty list of loaders).
        callbacks = [c for c in callbacks if not (isinstance(c, ModelCheckpoint) and c.monitor)]
        trainer_overrides = {"limit_val_batches": 0}
    loggers = _instantiate_group(cfg.get("logger"))
    if not loggers:
        # logger=none: nothing to report learning rates to (Lightning refuses the monitor).
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if OmegaConf.select(cfg, "model.discriminator") is not None and (
        str(cfg.trainer.get("strategy")) == "ddp"
    ):
        # Adversarial methods alternate two optimisers: each backward leaves the other
        # network's parameters without gradients, which plain DDP refuses.
        trainer_overrides["strategy"] = "ddp_find_unused_parameters_true"
        log.info("a discriminator is trained: DDP with find_unused_parameters=True")
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, **trainer_overrides
    )
    if os.environ.get("SUBMITIT_EXECUTOR") == "local" and trainer.world_size > 1:
        # Lightning would start the other ranks by re-running submitit's job command: a hang.
        raise ConfigError(
            f"hydra/launcher=local runs each job as one process, and this job asks for "
            f"{trainer.world_size} (trainer.devices x trainer.num_nodes). Use "
            "trainer.devices=1 with the local launcher, or hydra/launcher=slurm or torchrun "
            "for several processes."
        )

    plan = batch_plan(
        int(cfg.data.batch_size),
        trainer.world_size,
        trainer.accumulate_grad_batches,
        cfg.data.get("batch_size_per_device"),
    )
    datamodule.batch_size = plan.per_device
    with open_dict(cfg):
        cfg.batch_plan = asdict(plan)
        if plan.lr_scale != 1.0:
            cfg.model.optimizer.lr = float(cfg.model.optimizer.lr) * plan.lr_scale
            log.warning(
                "effective batch %d instead of the recipe's %d: learning rate scaled by %.3g "
                "(linear rule) to %g",
                plan.effective,
                plan.recipe,
                plan.lr_scale,
                cfg.model.optimizer.lr,
            )
    model: pl.LightningModule = instantiate(cfg.model)
    evaluated: dict[str, str] | None = None
    if cfg.get("train"):
        init = encoder_init(cfg, model.net)
    elif cfg.get("ckpt_path"):
        evaluated = {
            "path": str(cfg.ckpt_path),
            "architecture": load_weights(model.net, cfg.ckpt_path),
        }
        log.info("Evaluating %s (%s), not training", cfg.ckpt_path, evaluated["architecture"])
    with open_dict(cfg):
        cfg.init = init
    record = recipe_record(cfg)
    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    # A requeued job, or a rerun in the same folder, continues from the folder's checkpoint.
    resumed = None
    if cfg.get("train") and not cfg.get("ckpt_path"):
        resumed = resume_checkpoint(output_dir)
    ckpt_path = resumed["checkpoint"] if resumed else cfg.get("ckpt_path")
    before: dict[str, float] = {}
    if cfg.get("validate_before") and cfg.get("train") and not ckpt_path:
        log.info("Testing the untrained model")
        before = _test(trainer, model, datamodule)
    if cfg.get("train"):
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    after: dict[str, float] = {}
    per_image: list[dict[str, Any]] = []
    after_best: dict[str, float] | None = None
    selector = trainer.checkpoint_callback
    best = (selector.best_model_path or None) if getattr(selector, "monitor", None) else None
    if cfg.get("test"):
        after = _test(trainer, model, datamodule)
        per_image = list(model.per_image)
        if best:
            after_best = _test(trainer, model, datamodule, best)

    precision = str(trainer.precision)
    result = {
        "task_name": cfg.get("task_name"),
        "ppt": OmegaConf.to_container(cfg.ppt, resolve=True) if cfg.get("ppt") else None,
        "ppt_train": cfg.data.get("ppt_train"),
        "method": method_name(cfg),
        # The batch keys the network takes: "trimap" marks a trimap-based method (Table 1).
        "inputs": list(getattr(getattr(model, "net", None), "inputs", ("image",))),
        "encoder": _container(OmegaConf.select(cfg, "model.net.encoder", default=None)),
        "init": init,
        "seed": cfg.get("seed"),
        "batch": asdict(plan),
        "precision": {"train": precision, "eval": "32"},
        "sync_batchnorm": bool(cfg.trainer.get("sync_batchnorm", False)),
        "headline": (
            "after: test sets, model of the last epoch"
            if evaluated is None
            else f"after: test sets, the weights of {evaluated['path']} (evaluated, not trained "
            "in this run)"
        ),
        "evaluated_checkpoint": evaluated,
        "before": before,
        "resumed_from": resumed,
        "after": after,
        "after_best_on_heldout": after_best,
        "best_checkpoint": best,
        "last_checkpoint": (
            str(output_dir / "checkpoints" / "last.ckpt") if evaluated is None else None
        ),
        "heldout": list(getattr(datamodule, "heldout_names", [])),
        # files: each test set's trimap/ folder; generated: from its mattes (trimap-based
        # models only with data.generated_trimaps=true).
        "test_trimaps": (
            datamodule.trimap_sources(allow_generated=True)
            if hasattr(datamodule, "trimap_sources")
            else None
        ),
        # Per set obfuscated on the fly: images by mask, detector, fallback or skipped; and
        # what P3M-CP pastes. Gathered over every process (a collective: every rank asks).
        "privacy": privacy_metrics(trainer),
        "recipe": record,
        "recipe_fingerprint": fingerprint(record),
        "departures": leaves,
        "overrides": overrides,
    }
    if trainer.is_global_zero:
        (output_dir / "metrics.json").write_text(json.dumps(result, indent=2))
        if after:
            # The headline test's per-image values (the report's gallery picks images by them).
            write_per_image(output_dir / "per_image.csv", per_image)
        sets = list(getattr(datamodule, "eval_set_names", []))
        print("\n" + _summary_table(before, after, sets))
        if after_best is not None:
            print("\nBest on train-heldout:\n" + _summary_table({}, after_best, sets))
        print(
            f"\nOutputs in {output_dir}: config.yaml, metrics.json, per_image.csv, "
            "checkpoints/, panels/"
        )
    return result
