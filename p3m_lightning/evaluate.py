"""``evaluate(cfg)``: the benchmark evaluation behind ``eval.py``, importable for tests.

It scores a checkpoint on every evaluation set of the configured data, one whole image at a
time, with the ten P3M-10k metrics. With the published checkpoint and the real P3M-10k, this is
the command that reproduces the published P3M-Net numbers (``resize`` is the published test
protocol and the default)::

    python eval.py ckpt_path=p3mnet_pretrained_on_p3m10k.pth data=p3m10k \
        data.root=/path/to/P3M-10k

Any checkpoint ``load_model`` reads works the same: a Lightning ``.ckpt`` of ``train.py``
(``logs/<task>/runs/<date>/checkpoints/last.ckpt``), the published ``.pth`` or a bare state dict.
Other options: ``strategy=hybrid``, ``save_predictions=true``, ``device=cuda``,
``precision=bf16``, ``data.max_eval_images=20`` (quick checks); see ``conf/eval.yaml``.

Outputs, in the run folder (``logs/eval/runs/<date>/``): ``per_image.csv`` (set, name and the
ten metrics of every image), ``summary.json`` (per set: the mean of each metric and the image
count) and, with ``save_predictions=true``, ``predictions/<set>/<name>.png``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

    from p3m_lightning.strategies import InferenceStrategy

USAGE = (
    "usage: python eval.py ckpt_path=<Lightning .ckpt or published .pth> "
    "[architecture=<method>] [data=synthetic|p3m10k] [data.root=<P3M-10k>] "
    "[strategy=resize|hybrid|gfm_hybrid|modnet|trimap_guided|gca|indexnet|fba] "
    "[save_predictions=true] [device=cpu|cuda] [precision=32|bf16]"
)
EXIT_USAGE = 2

# The ten metrics in ``p3m_lightning.metrics.METRIC_NAMES`` order (a test checks it), with the
# titles of the printed table. Spelled out here so that a configuration mistake is reported
# before torch and torchmetrics load (seconds).
METRIC_TITLES: dict[str, str] = {
    "sad": "SAD",
    "mse": "MSE",
    "mad": "MAD",
    "sad_trimap": "SAD-trimap",
    "mse_trimap": "MSE-trimap",
    "mad_trimap": "MAD-trimap",
    "sad_fg": "SAD-fg",
    "sad_bg": "SAD-bg",
    "grad": "Grad",
    "conn": "Conn",
}
# Inside the face mask, for sets that have face masks (P3M-500-P); absent elsewhere.
FACE_TITLES: dict[str, str] = {
    "sad_face": "SAD-face",
    "mse_face": "MSE-face",
    "mad_face": "MAD-face",
}


class EvaluationError(Exception):
    """A configuration, checkpoint or dataset mistake, reported without a traceback."""


def _checkpoint_path(cfg: DictConfig) -> Path:
    """``cfg.ckpt_path``, checked to name a file.

    Raises:
        EvaluationError: with the reason.
    """
    ckpt = cfg.get("ckpt_path")
    if ckpt is None or str(ckpt).strip() == "":
        raise EvaluationError(f"ckpt_path is required\n{USAGE}")
    ckpt_path = Path(str(ckpt)).expanduser()
    if not ckpt_path.is_file():
        raise EvaluationError(f"ckpt_path {str(ckpt_path)!r}: no such file")
    return ckpt_path


def _options(cfg: DictConfig) -> tuple[str | None, str, torch.device]:
    """The strategy name (``None``: the checkpoint's), precision and device of ``cfg``, checked.

    Raises:
        EvaluationError: with the reason.
    """
    import torch

    from p3m_lightning.evaluation import PRECISIONS
    from p3m_lightning.strategies import STRATEGIES

    strategy = cfg.get("strategy")
    strategy = None if strategy in (None, "", "default") else str(strategy)
    if strategy is not None and strategy not in STRATEGIES:
        choices = ", ".join(STRATEGIES)
        raise EvaluationError(f"unknown strategy {strategy!r}; choose {choices}")
    precision = str(cfg.precision)
    if precision not in PRECISIONS:
        raise EvaluationError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    try:
        device = torch.device(str(cfg.device))
    except RuntimeError as err:
        raise EvaluationError(f"device {cfg.device!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EvaluationError("device 'cuda' asked for, but PyTorch sees no CUDA GPU; use 'cpu'")
    return strategy, precision, device


def _format_value(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    # MSE and MAD are printed like the published tables (0.0026), the sums with two decimals.
    return f"{value:.4f}" if name.startswith(("mse", "mad")) else f"{value:.2f}"


def format_table(sets: dict[str, dict[str, Any]]) -> str:
    """The per-set means as a fixed-width text table: a row per set, a column per metric."""
    titles = dict(METRIC_TITLES)
    if any("sad_face" in summary for summary in sets.values()):
        titles.update(FACE_TITLES)
    width = max(len(t) for t in titles.values()) + 2
    name_width = max([len("set"), *(len(name) for name in sets)]) + 2
    header = f"{'set':<{name_width}}{'images':>8}" + "".join(
        f"{title:>{width}}" for title in titles.values()
    )
    lines = [header]
    for name, summary in sets.items():
        cells = "".join(f"{_format_value(m, summary.get(m)):>{width}}" for m in titles)
        lines.append(f"{name:<{name_width}}{summary['n_images']:>8}{cells}")
    return "\n".join(lines)


def _evaluate_set(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    set_name: str,
    strategy: InferenceStrategy,
    precision: str,
    channels_last: bool,
    device: torch.device,
    predictions_dir: Path | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score every image of one evaluation set through the task's own evaluation path.

    Returns:
        The set's summary (``n_images`` and the mean of each metric, as ``MattingTask``'s
        test computes it) and a row per scored image.
    """
    import torch
    from tqdm import tqdm

    from p3m_lightning.evaluation import score_image
    from p3m_lightning.metrics import MattingMetrics

    metrics = MattingMetrics()
    with torch.inference_mode():
        for batch in tqdm(loader, desc=set_name, unit="image", dynamic_ncols=True):
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            score_image(model, strategy, batch, metrics, precision, channels_last, predictions_dir)
    count = int(metrics.num_images)
    means = metrics.compute() if count else {}
    summary = {
        "n_images": count,
        **{name: (float(means[name]) if name in means else None) for name in METRIC_TITLES},
        **{name: float(means[name]) for name in FACE_TITLES if name in means},
    }
    return summary, [{"set": set_name, **row} for row in metrics.rows]


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score a checkpoint on every evaluation set of ``cfg.data``.

    Args:
        cfg: the ``conf/eval.yaml`` keys: ``ckpt_path``, ``architecture``,
            ``architecture_config``, ``data``, ``paths``, ``strategy``,
            ``max_side``, ``save_predictions``, ``device``, ``precision``.

    Returns:
        The content of ``summary.json``: ``ckpt_path``, ``architecture``, ``strategy``,
        ``trimaps`` (per set: ``files`` or ``generated``), ``max_side``, ``precision``,
        ``device``, ``data_root`` and ``sets``, per evaluation set (in the
        datamodule's order) ``n_images`` and the mean of each of the ten metrics.

    Raises:
        EvaluationError: a missing or unreadable checkpoint, an unknown option value, or a
            missing or damaged dataset (the datamodule's message, which says where to get
            P3M-10k).
    """
    ckpt_path = _checkpoint_path(cfg)
    # torch and the data stack load only now, so a mistyped ckpt_path is reported at once.
    strategy_name, precision, device = _options(cfg)
    from p3m_lightning.plugins import PluginError, import_plugins

    try:
        import_plugins(cfg.get("plugins"))
    except PluginError as err:
        raise EvaluationError(str(err)) from None
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from p3m_lightning.data.p3m10k import DatasetError
    from p3m_lightning.evaluation import write_per_image
    from p3m_lightning.models.checkpoint import load_checkpoint
    from p3m_lightning.models.safe_load import CheckpointError
    from p3m_lightning.strategies import build_strategy

    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    architecture_config = cfg.get("architecture_config")
    try:
        loaded = load_checkpoint(
            ckpt_path,
            map_location=device,
            architecture=cfg.get("architecture"),
            architecture_config=OmegaConf.to_container(architecture_config, resolve=True)
            if architecture_config
            else None,
        )
    except CheckpointError as err:
        raise EvaluationError(str(err)) from None
    model = loaded.net
    strategy = build_strategy(strategy_name or loaded.strategy, int(cfg.max_side))
    try:
        datamodule = instantiate(cfg.data)
        # Background-based models (BASIC) take a plate: estimated from image and matte.
        datamodule.eval_backgrounds = "bg" in getattr(model, "inputs", ())
        datamodule.prepare_data()
        datamodule.setup("test")
        trimaps = datamodule.trimap_sources(
            allow_generated=None if "trimap" in getattr(model, "inputs", ()) else True
        )
    # FileExistsError: data.root holds a synthetic dataset of other parameters.
    except (DatasetError, FileExistsError) as err:
        raise EvaluationError(str(err)) from None

    rows: list[dict[str, Any]] = []
    sets: dict[str, dict[str, Any]] = {}
    loaders = datamodule.test_dataloader()
    for set_name, loader in zip(datamodule.eval_set_names, loaders, strict=True):
        predictions_dir = output_dir / "predictions" / set_name if cfg.save_predictions else None
        sets[set_name], set_rows = _evaluate_set(
            model,
            loader,
            set_name,
            strategy,
            precision,
            loaded.channels_last,
            device,
            predictions_dir,
        )
        rows.extend(set_rows)

    summary = {
        "ckpt_path": str(ckpt_path),
        "architecture": loaded.architecture,
        "strategy": strategy.spec(),
        "trimaps": trimaps,
        "max_side": int(cfg.max_side),
        "precision": precision,
        "device": str(device),
        "data_root": str(datamodule.root),
        "sets": sets,
    }
    write_per_image(output_dir / "per_image.csv", rows)
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n" + format_table(sets))
    print(f"\nOutputs in {output_dir}: per_image.csv, summary.json")
    return summary


def run(cfg: DictConfig) -> int:
    """``evaluate(cfg)`` for the command line: a mistake is one message and status 2.

    Returns:
        0 on success, 2 on a configuration, checkpoint or dataset mistake (message on stderr).
    """
    try:
        evaluate(cfg)
    except EvaluationError as err:
        print(f"eval: {err}", file=sys.stderr)
        return EXIT_USAGE
    return 0
