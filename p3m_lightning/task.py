"""The matting task: one LightningModule owning the objective, metrics, optimiser and logging."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import nn

from p3m_lightning.evaluation import drop_skipped, model_inputs, net_inputs, score_image
from p3m_lightning.inference import MAX_SIDE
from p3m_lightning.methods.p3m_net.loss import P3MLoss
from p3m_lightning.metrics import MattingMetrics
from p3m_lightning.models.checkpoint import ARCHITECTURE_KEY, architecture_record
from p3m_lightning.models.feature_copy_paste import FeatureCopyPaste
from p3m_lightning.models.init_from import freeze as freeze_parts
from p3m_lightning.models.init_from import init_from as load_parts
from p3m_lightning.models.registry import architecture_of
from p3m_lightning.strategies import InferenceStrategy, build_strategy

DEFAULT_EVAL_SET = "val"
GRADIENT_CLIPPING_KEY = "gradient_clipping"
"""Checkpoint key of the gradient clipping's state (``MattingTask(gradient_clipping=...)``)."""


def _gather_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every process's rows, process by process (this process's alone outside DDP)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return list(rows)
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, list(rows))
    return [row for part in parts for row in part]


@contextmanager
def _running_statistics_kept(module: nn.Module) -> Iterator[None]:
    """Inside, the norm layers of ``module`` run as usual but keep their running statistics.

    Their momentum is 0 (the update ``(1 - m) * running + m * batch`` leaves them) and their
    batch counts are put back; the forward pass, and its collectives (SyncBatchNorm), are
    unchanged. The statistics themselves are not rewritten: autograd may have saved them.
    """
    # _NormBase: BatchNorm, SyncBatchNorm and InstanceNorm, the layers with running statistics.
    norms = [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats
    ]
    saved = [(m, m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        with torch.no_grad():
            for m, momentum, count in saved:
                m.momentum = momentum
                m.num_batches_tracked.copy_(count)


class MattingTask(pl.LightningModule):
    """Train and evaluate any matting network of the model contract (docs/adding-a-model.md).

    The network takes the batch keys of its ``inputs`` attribute (``image``; ``image`` and
    ``trimap`` for trimap-based methods; ``image`` and ``bg`` for background-based ones) and
    returns a dict of named outputs, at least ``alpha`` (P3M-Net's is its ``fusion``). The loss
    maps ``(outputs, batch)`` to named terms with the optimised
    total under ``loss``; every term is logged as ``train/<name>``. Validation and test run the
    inference strategy on whole images at full resolution, in float32 whatever the training
    precision (mixed-precision autocast is switched off for evaluation), and log the matting
    metrics per set, e.g. ``test/P3M-500-P/sad``. Test sets are named by the datamodule's
    ``eval_set_names``, validation sets by its ``val_set_names`` (a split held out from the
    training images; a datamodule without that attribute validates on its ``eval_set_names``),
    one dataloader each, in that order.

    Args:
        net: the network (its registered architecture is stored in checkpoints; its weights
            in ``state_dict`` under ``net.``).
        loss: the objective; default ``P3MLoss()`` with the published weights.
        optimizer: a partial optimiser taking parameter groups (default Adam, lr 1e-5).
        scheduler: an optional partial LR scheduler taking the optimiser.
        scheduler_interval: ``"epoch"`` steps the scheduler after every epoch, ``"step"``
            after every optimiser step (per-step warm-up and decay, e.g. GCA's; a scheduler
            then counts optimiser steps, so its milestones and lengths are in steps).
        gradient_clipping: clips the gradients after each backward pass: a callable taking
            the optimiser's parameters and returning their total norm before clipping, e.g.
            GCA's `p3m_lightning.methods.gca.clipping.MovingMaxClipping` or a fixed norm,
            ``partial(torch.nn.utils.clip_grad_norm_, max_norm=1.0)``. The norm is logged as
            ``train/grad_norm``; a ``state_dict`` it has is kept in checkpoints. Leave the
            trainer's ``gradient_clip_val`` unset with it (one way to clip).
        encoder_lr: learning rate of a parameter group named ``encoder`` (the network's
            ``param_groups``); ``None`` uses the optimiser's.
        strategy: the inference strategy: a name of ``p3m_lightning.strategies.STRATEGIES``
            (``resize``, the published protocol of P3M-Net; ``hybrid``; ``gfm_hybrid``;
            ``modnet``; ``trimap_guided``) or a built ``InferenceStrategy``.
        max_side: cap on the side the network sees during evaluation.
        channels_last: keep the network in channels-last memory format (faster convolutions).
        feature_copy_paste: P3M-FCP: training batches that carry ``cp_source`` and
            ``cp_mask`` run through it (`p3m_lightning.models.feature_copy_paste`).
        fcp_start_epoch: first epoch of P3M-FCP (the journal's ``START_EPOCH``).
        discriminator: adversarial methods (AlphaGAN; HATT optionally): the discriminator. The
            loss gets it (``loss.attach_discriminator``) for its adversarial term, and each
            training step alternates two optimisers (manual optimisation): a generator step
            on the loss, then a discriminator step on ``discriminator_loss``.
        discriminator_loss: ``(discriminator, outputs, batch) -> scalar``, the predictions
            detached inside (e.g. ``p3m_lightning.methods.alphagan.loss.discriminator_loss``).
        discriminator_optimizer: a partial optimiser for the discriminator (default: the
            generator's factory).
        init_from: staged recipes: parts of the network started from earlier checkpoints,
            ``[{"checkpoint": path, "prefix": "tnet."}, ...]`` (``models.init_from``).
        freeze: prefixes of the network's parameters that are not trained (their BatchNorm
            statistics stay too: those modules are kept in eval mode).
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module | None = None,
        optimizer: Callable[[Iterable[dict[str, Any]]], torch.optim.Optimizer] | None = None,
        scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        gradient_clipping: Callable[[list[nn.Parameter]], torch.Tensor] | None = None,
        encoder_lr: float | None = None,
        strategy: str | InferenceStrategy = "resize",
        max_side: int = MAX_SIDE,
        channels_last: bool = False,
        feature_copy_paste: FeatureCopyPaste | None = None,
        fcp_start_epoch: int = 0,
        discriminator: nn.Module | None = None,
        discriminator_loss: Callable[..., torch.Tensor] | None = None,
        discriminator_optimizer: Callable[[Iterable[Any]], torch.optim.Optimizer] | None = None,
        init_from: Sequence[Mapping[str, Any]] | None = None,
        freeze: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        # Modules and callables stay out of the checkpoint: it must load with weights_only.
        self.save_hyperparameters(
            ignore=[
                "net",
                "loss",
                "optimizer",
                "scheduler",
                "gradient_clipping",
                "feature_copy_paste",
                "strategy",
                "discriminator",
                "discriminator_loss",
                "discriminator_optimizer",
                # Hydra hands lists in as ListConfig, which weights_only loading refuses.
                "init_from",
                "freeze",
            ]
        )
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(
                f"model.scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}"
            )
        self.strategy = build_strategy(strategy, max_side)
        self.hparams["strategy"] = self.strategy.spec()
        self.feature_copy_paste = feature_copy_paste
        if feature_copy_paste is not None and net_inputs(net) != ("image",):
            raise ValueError("feature-level copy-paste (cp=fcp) needs an image-only network")
        # Checkpoints rebuild only registered architectures: say so now, not after an epoch.
        architecture_of(net)
        if init_from:
            load_parts(net, init_from)
        self.frozen = list(freeze or [])
        freeze_parts(net, self.frozen)
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        self._frozen_to_eval()
        self.loss = loss if loss is not None else P3MLoss()
        self.optimizer_factory = optimizer or partial(torch.optim.Adam, lr=1e-5)
        self.scheduler_factory = scheduler
        self.gradient_clipping = gradient_clipping
        self.discriminator = discriminator
        self.discriminator_loss = discriminator_loss
        self.discriminator_optimizer = discriminator_optimizer or self.optimizer_factory
        if discriminator is not None:
            if discriminator_loss is None or not hasattr(self.loss, "attach_discriminator"):
                raise ValueError(
                    "adversarial training needs discriminator_loss and a loss with "
                    f"attach_discriminator; {type(self.loss).__name__} has none"
                )
            self.loss.attach_discriminator(discriminator)
            # Two optimisers alternate within each step.
            self.automatic_optimization = False
        self.val_set_names: list[str] = [DEFAULT_EVAL_SET]
        self.test_set_names: list[str] = [DEFAULT_EVAL_SET]
        self.val_metrics = nn.ModuleDict({DEFAULT_EVAL_SET: MattingMetrics()})
        self.test_metrics = nn.ModuleDict({DEFAULT_EVAL_SET: MattingMetrics()})
        self.results: dict[str, dict[str, dict[str, float]]] = {}
        """The last validation / test means per set, float64 (what ``metrics.json`` holds)."""
        self.per_image: list[dict[str, Any]] = []
        """The last test's rows: ``set``, ``name`` and the values of every image scored."""

    def train(self, mode: bool = True) -> MattingTask:
        """``nn.Module.train``, keeping the frozen parts of the network in eval mode."""
        super().train(mode)
        self._frozen_to_eval()
        return self

    def _frozen_to_eval(self) -> None:
        for prefix in self.frozen:
            for name, module in self.net.named_modules():
                if name and f"{name}.".startswith(prefix):
                    module.eval()

    def on_train_epoch_start(self) -> None:
        """Frozen parts stay in eval mode whatever mode Lightning set (BatchNorm statistics)."""
        self._frozen_to_eval()

    def setup(self, stage: str) -> None:
        """Create one metric collection per validation and test set the datamodule names.

        A trimap-based network is scored with the test sets' own trimaps: a set without a
        ``trimap/`` folder stops the run here unless the datamodule accepts generated ones.
        """
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if "trimap" in net_inputs(self.net) and hasattr(datamodule, "trimap_sources"):
            datamodule.trimap_sources()
        tests = list(getattr(datamodule, "eval_set_names", None) or [DEFAULT_EVAL_SET])
        vals = list(getattr(datamodule, "val_set_names", tests))
        if tests != self.test_set_names:
            self.test_set_names = tests
            self.test_metrics = nn.ModuleDict({n: MattingMetrics() for n in tests})
        if vals != self.val_set_names:
            self.val_set_names = vals
            self.val_metrics = nn.ModuleDict({n: MattingMetrics() for n in vals})

    def set_names(self, stage: str) -> list[str]:
        """The validation (``stage="val"``) or test set names, in dataloader order."""
        return self.val_set_names if stage == "val" else self.test_set_names

    def forward(self, *inputs: torch.Tensor) -> Any:
        """Run the network on its inputs (``net.inputs`` order); returns its outputs."""
        return self.net(*inputs)

    def _inputs(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return model_inputs(self.net, batch, bool(self.hparams.channels_last))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """One optimisation step on a batch of training crops.

        Samples whose face region could not be established (``privacy == "skipped"``, see
        ``p3m_lightning.data.privacy``) are dropped. A batch of only such samples is skipped in
        one process. Under DDP every process must join the step's collectives (the gradient
        all-reduce, SyncBatchNorm), so such a process runs the step on its skipped samples
        (which the dataset obfuscated whole) with the loss weighted zero and the running
        statistics of its norm layers held: its gradients are zeros, the averaged
        gradient is the other processes' scaled by their share of processes, and nothing of
        the skipped images stays in the model. (With SyncBatchNorm they still enter that one
        step's batch statistics.)
        """
        kept = drop_skipped(batch)
        if kept is not None:
            return self._step(kept, 1.0)
        if self.trainer.world_size == 1:
            return None
        with _running_statistics_kept(self):
            return self._step(batch, 0.0)

    def _step(self, batch: dict[str, Any], weight: float) -> torch.Tensor:
        """The training step on ``batch``, its loss (and discriminator loss) times ``weight``;
        a zero-weighted step logs nothing."""
        inputs = self._inputs(batch)
        fcp = self.feature_copy_paste
        if (
            fcp is not None
            and "cp_source" in batch
            and self.current_epoch >= self.hparams.fcp_start_epoch
        ):
            source = model_inputs(
                self.net, {"image": batch["cp_source"]}, self.hparams.channels_last
            )
            out = fcp(self.net, inputs["image"], source["image"], batch["cp_mask"])
        else:
            out = self.net(*inputs.values())
        terms = self.loss(out, batch)
        terms = {**terms, "loss": terms["loss"] * weight}
        if self.discriminator is not None:
            terms = {**terms, **self._adversarial_step(terms["loss"], out, batch, weight)}
        if weight:
            self.log_dict(
                {f"train/{k}": v.detach() for k, v in terms.items()},
                on_step=True,
                on_epoch=True,
                batch_size=batch["image"].shape[0],
            )
            self.log("train/loss_step", terms["loss"].detach(), prog_bar=True, logger=False)
        return terms["loss"]

    def _adversarial_step(
        self, loss: torch.Tensor, out: Any, batch: dict[str, Any], weight: float = 1.0
    ) -> dict[str, torch.Tensor]:
        """Generator step on ``loss``, then a discriminator step on ``weight`` times its loss;
        returns ``loss_d``."""
        opt_g, opt_d = self.optimizers()
        opt_g.zero_grad()
        self.manual_backward(loss)
        if self.gradient_clipping is not None:
            self._clip(opt_g)
        opt_g.step()
        if self.hparams.scheduler_interval == "step":
            self._step_schedulers()
        loss_d = self.discriminator_loss(self.discriminator, out, batch) * weight
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        opt_d.step()
        return {"loss_d": loss_d}

    def _step_schedulers(self) -> None:
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            if scheduler is not None:
                scheduler.step()

    def on_train_epoch_end(self) -> None:
        """With manual optimisation, step per-epoch schedulers here (per-step ones are
        stepped after each generator step)."""
        if not self.automatic_optimization and self.hparams.scheduler_interval == "epoch":
            self._step_schedulers()

    def _clip(self, optimizer: torch.optim.Optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        norm = self.gradient_clipping(params)
        self.log("train/grad_norm", norm.detach(), on_step=True, on_epoch=False, logger=True)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip with ``gradient_clipping`` when given, else as the trainer says."""
        if self.gradient_clipping is None:
            super().configure_gradient_clipping(
                optimizer, gradient_clip_val, gradient_clip_algorithm
            )
            return
        if gradient_clip_val:
            raise ValueError(
                f"model.gradient_clipping ({self.gradient_clipping!r}) and "
                f"trainer.gradient_clip_val ({gradient_clip_val}) both clip the gradients; "
                "set trainer.gradient_clip_val=null or model.gradient_clipping=null"
            )
        self._clip(optimizer)

    def _evaluate(
        self, stage: str, metrics: nn.ModuleDict, batch: dict[str, Any], dataloader_idx: int
    ) -> torch.Tensor | None:
        # Benchmark figures are float32 whatever the training precision (score_image switches
        # off the mixed-precision autocast Lightning wraps around this step).
        return score_image(
            self.net,
            self.strategy,
            batch,
            metrics[self.set_names(stage)[dataloader_idx]],
            channels_last=bool(self.hparams.channels_last),
        )

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0):
        """Evaluate one whole image of evaluation set ``dataloader_idx``; returns its alpha."""
        return self._evaluate("val", self.val_metrics, batch, dataloader_idx)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0):
        """Like ``validation_step``, logged under ``test/``."""
        return self._evaluate("test", self.test_metrics, batch, dataloader_idx)

    def _log_metrics(self, prefix: str, metrics: nn.ModuleDict) -> None:
        """Log each set's means and keep them, in float64, in ``results[prefix]`` (and, for
        the test, every image's values in ``per_image``)."""
        self.results[prefix] = {}
        if prefix == "test":
            self.per_image = []
        for name, metric in metrics.items():
            # Every process computes (a collective reduction), also one that saw no image of
            # this set (fewer images than processes): deciding locally would hang the others.
            with metric.sync_context():
                count = int(metric.num_images)  # over every process
            values = metric.compute()
            rows = _gather_rows(metric.rows) if prefix == "test" else []
            metric.reset()
            if torch.isnan(values["sad"]):
                continue  # no process saw an image of this set in this run
            self.results[prefix][name] = {
                "n_images": count,
                **{k: float(v) for k, v in values.items()},
            }
            if prefix == "test":
                self.per_image.extend({"set": name, **row} for row in rows)
            # Already reduced over processes (sum and count states): sync_dist averages equal
            # values, and only keeps Lightning from warning.
            logged = {f"{prefix}/{name}/{k}": v for k, v in values.items()}
            self.log_dict(logged, sync_dist=True, add_dataloader_idx=False)

    def on_validation_epoch_end(self) -> None:
        """Log the ten metrics of each evaluation set."""
        self._log_metrics("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        """Log the ten metrics of each evaluation set."""
        self._log_metrics("test", self.test_metrics)

    def configure_optimizers(self) -> Any:
        """The configured optimiser and optional scheduler.

        Parameter groups come from the network's ``param_groups()`` when it has one (P3M-Net:
        ``decoder`` and ``encoder``; IndexNet: new layers and the pretrained backbone), else
        one group of every trainable parameter. A group named ``encoder`` takes
        ``encoder_lr`` when set; a group with ``lr_scale`` runs at that multiple of the
        optimiser's learning rate. With a discriminator: the generator's and the
        discriminator's optimisers, in that order.
        """
        if hasattr(self.net, "param_groups"):
            groups = [dict(g) for g in self.net.param_groups()]
        else:
            groups = [{"params": [p for p in self.net.parameters() if p.requires_grad]}]
        for group in groups:
            if group.get("name") == "encoder" and self.hparams.encoder_lr is not None:
                group["lr"] = self.hparams.encoder_lr
        optimizer = self.optimizer_factory(groups)
        for group in optimizer.param_groups:
            if "lr_scale" in group:
                group["lr"] = group["lr"] * group["lr_scale"]
        if self.discriminator is not None:
            critic = self.discriminator_optimizer(
                [p for p in self.discriminator.parameters() if p.requires_grad]
            )
            if self.scheduler_factory is None:
                return [optimizer, critic]
            # Stepped by the task itself (manual optimisation), per epoch or per step.
            return [optimizer, critic], [self.scheduler_factory(optimizer)]
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.scheduler_interval},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the architecture so ``load_model`` rebuilds the network from the file alone,
        and the gradient clipping's state (GCA's moving maximum) for an exact resume."""
        checkpoint[ARCHITECTURE_KEY] = architecture_record(
            self.net, self.strategy.spec(), bool(self.hparams.channels_last)
        )
        if hasattr(self.gradient_clipping, "state_dict"):
            checkpoint[GRADIENT_CLIPPING_KEY] = self.gradient_clipping.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the gradient clipping's state saved by `on_save_checkpoint`."""
        state = checkpoint.get(GRADIENT_CLIPPING_KEY)
        if state is not None and hasattr(self.gradient_clipping, "load_state_dict"):
            self.gradient_clipping.load_state_dict(state)
