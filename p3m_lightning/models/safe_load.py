"""Reading checkpoint files safely: the leaf every model module may import (no model imports).

Every checkpoint file is untrusted input: ``torch.load(weights_only=True)`` refuses a file whose
unpickling would construct arbitrary Python objects (and so could run code) before anything in it
runs.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used; the message names the file and the reason."""


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Safely read a checkpoint file into a dict.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is not a readable checkpoint, or it holds Python objects that
            ``weights_only`` loading refuses (such a file could run code when unpickled).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        raise CheckpointError(
            f"{path}: refused to load. The file holds Python objects other than tensors and "
            "plain containers, and unpickling it could run arbitrary code. Nothing in it was "
            f"executed. Only use checkpoints from a source you trust. ({first[:300]})"
        ) from None
    except Exception as err:  # noqa: BLE001 - any decoding failure is reported with the file
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return obj


def tensor_state(raw: dict, path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a read checkpoint: ``raw["state_dict"]`` (or ``raw`` itself, a bare
    state dict), checked to map names to tensors, with a DataParallel ``module.`` prefix that
    every name carries stripped.

    Raises:
        CheckpointError: it is not a mapping of names to tensors.
    """
    state = raw.get("state_dict", raw)
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path}: its state_dict is not a mapping of names to tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state
