"""The one evaluation path: how an image of an evaluation set is scored.

``MattingTask``'s validation and test steps and ``eval.py`` both call ``score_image`` on each
batch of an evaluation set, so a checkpoint's figures from ``train.py``'s test and from
``eval.py`` are the same computation: which samples count, how the model's inputs are formed,
the strategy, the precision, the metrics (``MattingMetrics``, face region included) and the
matte written to disk are decided here once.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from p3m_lightning.inference import InferenceStrategy
from p3m_lightning.metrics import FACE_METRIC_NAMES, METRIC_NAMES, MattingMetrics

PRECISIONS = ("32", "bf16")
"""Evaluation precisions: float32 (the benchmark's), or the network under bfloat16 autocast."""

__all__ = [
    "PRECISIONS",
    "drop_skipped",
    "model_inputs",
    "net_inputs",
    "score_image",
    "write_per_image",
]


def net_inputs(net: nn.Module) -> tuple[str, ...]:
    """The batch keys ``net`` takes, in argument order (``("image",)`` unless it says)."""
    return tuple(getattr(net, "inputs", ("image",)))


def drop_skipped(batch: dict[str, Any]) -> dict[str, Any] | None:
    """``batch`` without its ``privacy == "skipped"`` samples; None if none is left.

    A sample of an on-the-fly obfuscated set whose face region could not be established is not
    a face-obfuscated image: it is neither trained on nor scored (the privacy report lists it).
    """
    sources = batch.get("privacy")
    if sources is None or "skipped" not in sources:
        return batch
    keep = [i for i, source in enumerate(sources) if source != "skipped"]
    if not keep:
        return None
    index = torch.tensor(keep, device=batch["image"].device)
    return {
        key: value.index_select(0, index) if torch.is_tensor(value) else [value[i] for i in keep]
        for key, value in batch.items()
    }


def model_inputs(
    net: nn.Module, batch: Mapping[str, Any], channels_last: bool = False
) -> dict[str, Tensor]:
    """The batch tensors ``net`` takes (``net_inputs``), in float32, optionally channels-last.

    Raises:
        KeyError: the batch lacks one of them (named).
    """
    names = net_inputs(net)
    missing = [k for k in names if k not in batch]
    if missing:
        raise KeyError(
            f"{type(net).__name__} takes {', '.join(names)}, but the batch has no "
            f"{', '.join(missing)}"
        )
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return {k: batch[k].float().contiguous(memory_format=fmt) for k in names}


def score_image(
    net: nn.Module,
    strategy: InferenceStrategy,
    batch: dict[str, Any],
    metrics: MattingMetrics,
    precision: str = "32",
    channels_last: bool = False,
    predictions_dir: Path | None = None,
) -> Tensor | None:
    """Score one whole image of an evaluation set; returns its ``(H, W)`` alpha, or None.

    Not scored (None): a padding sample (it only keeps a process without images of this set
    in step with the others) and a sample whose face region could not be established
    (``privacy == "skipped"``, see ``drop_skipped``).

    Args:
        net: the network in eval mode, on the batch's device.
        strategy: its inference strategy.
        batch: one image of the evaluation dataloader (batch size 1): ``image`` and the other
            inputs of ``net``, ``alpha``, ``trimap`` (the set's own), optionally
            ``face_mask``, ``name``, ``privacy``, ``padding``.
        metrics: the set's metric collection; the image's values are added (and kept in
            ``metrics.rows``).
        precision: ``"32"`` (autocast switched off, whatever the training precision) or
            ``"bf16"`` (the network under bfloat16 autocast).
        channels_last: feed the inputs in channels-last memory format (the network's own).
        predictions_dir: also write the matte as ``<name>.png`` (8-bit) there.

    Raises:
        ValueError: more than one image in the batch, or an unknown precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    if drop_skipped(batch) is None or batch.get("padding") is not None:
        return None
    image = batch["image"]
    if image.shape[0] != 1:
        raise ValueError(
            f"whole-image evaluation takes one image per batch, got {image.shape[0]}; "
            "set the evaluation dataloaders' batch_size to 1"
        )
    name = str(batch["name"][0]) if batch.get("name") else ""
    inputs = model_inputs(net, batch, channels_last)
    with torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        pred = strategy(net, inputs).float()
    face_mask = batch.get("face_mask")
    metrics.update(
        pred,
        batch["alpha"][0, 0],
        batch["trimap"][0, 0],
        # Sets with face masks (P3M-500-P) are also scored inside the face.
        None if face_mask is None else face_mask[0, 0],
        names=[name],
    )
    if predictions_dir is not None:
        from p3m_lightning.imageio import alpha_to_uint8, write_png_atomic

        predictions_dir.mkdir(parents=True, exist_ok=True)
        write_png_atomic(predictions_dir / f"{name}.png", alpha_to_uint8(pred.cpu().numpy()))
    return pred


def write_per_image(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write ``rows`` (``set``, ``name`` and the metrics of each scored image) as a CSV.

    Values are written with ``repr``, which keeps every bit: the CSV's means are the summary's.
    """
    with path.open("w", newline="") as handle:
        fields = ["set", "name", *METRIC_NAMES, *FACE_METRIC_NAMES]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(
            {k: repr(v) if isinstance(v, float) else v for k, v in row.items()} for row in rows
        )
