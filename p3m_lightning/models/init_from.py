"""Start parts of a network from earlier runs' checkpoints: the staged recipes' glue.

Several methods train in stages (SHM: T-Net, then M-Net, then both; DIM: encoder-decoder, then
the refiner, then both). A stage starts the modules named by a prefix (``tnet.``, ``mnet.``,
``backbone.``) from the checkpoint of the stage before; every file is read with
``weights_only`` like any checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from p3m_lightning.models.safe_load import CheckpointError, read_checkpoint, tensor_state

__all__ = ["freeze", "init_from"]


def _network_state(path: Path) -> dict[str, torch.Tensor]:
    """The network's state of a project checkpoint (``net.*``) or a bare state dict."""
    state = tensor_state(read_checkpoint(path, "cpu"), path)
    if any(k.startswith("net.") for k in state):
        state = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    return state


def init_from(net: nn.Module, sources: Iterable[Mapping[str, Any]]) -> list[str]:
    """Load the parameters and buffers under each source's ``prefix`` from its checkpoint.

    Args:
        net: the network to start.
        sources: ``{"checkpoint": path, "prefix": "tnet."}`` each; the prefix names a part of
            ``net`` (its state-dict names start with it); ``""`` loads every name.

    Returns:
        The names loaded.

    Raises:
        FileNotFoundError, CheckpointError: the file, and which names of the part it lacks or
            holds with another shape.
    """
    own = net.state_dict()
    loaded: list[str] = []
    for source in sources:
        path = Path(str(source["checkpoint"])).expanduser()
        prefix = str(source.get("prefix", ""))
        wanted = [k for k in own if k.startswith(prefix)]
        if not wanted:
            raise CheckpointError(f"init_from {path}: the network has no part named {prefix!r}")
        state = _network_state(path)
        missing = [k for k in wanted if k not in state]
        misshaped = [
            f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
            for k in wanted
            if k in state and tuple(state[k].shape) != tuple(own[k].shape)
        ]
        if missing or misshaped:
            raise CheckpointError(
                f"init_from {path}: cannot start {prefix or 'the network'!r} from it; missing: "
                f"{missing[:10]}{' ...' if len(missing) > 10 else ''}; mis-shaped: {misshaped[:10]}"
            )
        with torch.no_grad():
            for k in wanted:
                own[k].copy_(state[k])
        loaded += wanted
    return loaded


def freeze(net: nn.Module, prefixes: Iterable[str]) -> int:
    """Stop training the parameters whose names start with any of ``prefixes``.

    Their BatchNorm layers keep their running statistics too (eval mode is set by the task
    after each ``train()``).

    Returns:
        The number of parameters frozen.

    Raises:
        ValueError: a prefix names no parameter.
    """
    count = 0
    for prefix in prefixes:
        matched = [p for n, p in net.named_parameters() if n.startswith(prefix)]
        if not matched:
            raise ValueError(f"freeze: the network has no parameters under {prefix!r}")
        for p in matched:
            p.requires_grad_(False)
            count += p.numel()
    return count
