"""Sweeps of real run folders for the report's gallery and page tests, without training.

Each run folder holds what ``train.py`` writes and the report reads: ``config.yaml`` (the
data, model and privacy sections of a composed config), ``metrics.json``,
``checkpoints/last.ckpt`` (an untrained tiny network in the project's checkpoint format) and
``per_image.csv``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from p3m_lightning.evaluation import write_per_image
from p3m_lightning.models.checkpoint import architecture_record

CONF = Path(__file__).resolve().parents[1] / "conf"
SYNTHETIC = {"n_train": 2, "n_val": 3, "min_side": 96, "max_side": 136, "seed": 0}
"""The tiny synthetic P3M-10k of these sweeps (`p3m_lightning.data.synthetic.generate`)."""
DEFAULT_PRIVACY = {
    "allow_unobfuscated": False,
    "method": "blur",
    "on_no_face": "person",
    "use_detector": True,
}
"""``conf/train.yaml``'s ``privacy``."""


def data_config(root: Path, eval_sets: Sequence[str], synthetic: bool = True) -> dict[str, Any]:
    """The ``data`` section of a composed config: the tiny synthetic P3M-10k at ``root``, or
    (``synthetic=False``) a P3M-10k-like folder ``root`` written by the test."""
    overrides = [
        "data=synthetic",
        *(f"data.synthetic.{k}={v}" for k, v in SYNTHETIC.items()),
        f"data.root={root}",
        f"data.eval_sets=[{','.join(eval_sets)}]",
    ]
    if not synthetic:
        overrides.append("data.synthetic=null")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return OmegaConf.to_container(cfg.data, resolve=True)


def tiny_gfm() -> nn.Module:
    from p3m_lightning.methods.gfm.network import GFMNet

    torch.manual_seed(0)
    return GFMNet(width=8).eval()


def tiny_dim() -> nn.Module:
    from p3m_lightning.methods.dim.network import DIMNet

    torch.manual_seed(1)
    return DIMNet(width=8, refiner_channels=8).eval()


def write_run(
    folder: Path,
    net: nn.Module,
    method: str,
    train: str,
    data: dict[str, Any],
    per_image: dict[tuple[str, str], float],
    seed: int = 1,
    privacy: dict[str, Any] | None = None,
    recipe: dict[str, Any] | None = None,
    departures: list[str] | None = None,
) -> None:
    """One run folder as ``train.py`` leaves it; ``per_image``: ``(set, name) -> SAD``;
    ``recipe`` and ``departures`` as ``metrics.json`` records them."""
    (folder / "checkpoints").mkdir(parents=True)
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
            "architecture": architecture_record(net),
        },
        folder / "checkpoints" / "last.ckpt",
    )
    config = {
        "data": data,
        "model": {"max_side": 1600},
        "privacy": privacy or DEFAULT_PRIVACY,
        "plugins": [],
        "seed": seed,
    }
    OmegaConf.save(OmegaConf.create(config), folder / "config.yaml")
    sets = sorted({s for s, _ in per_image})
    after = {}
    for test_set in sets:
        sads = [v for (s, _), v in per_image.items() if s == test_set]
        after[f"test/{test_set}/sad"] = sum(sads) / len(sads)
        after[f"test/{test_set}/mse"] = 0.01
        after[f"test/{test_set}/sad_trimap"] = sum(sads) / len(sads) / 2
        after[f"test/{test_set}/mse_trimap"] = 0.02
    metrics = {
        "task_name": f"ppt_{train.lower()}",
        "ppt": {"train": train},
        "method": method,
        "inputs": list(getattr(net, "inputs", ("image",))),
        "init": "scratch",
        "seed": seed,
        "precision": {"train": "32-true", "eval": "32"},
        "after": after,
        "after_best_on_heldout": None,
    }
    if recipe is not None:
        metrics["recipe"] = recipe
    if departures is not None:
        metrics["departures"] = departures
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    rows = [{"set": s, "name": n, "sad": v, "mse": 0.01} for (s, n), v in per_image.items()]
    write_per_image(folder / "per_image.csv", rows)
