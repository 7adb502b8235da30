"""Reading and writing matting checkpoints; every checkpoint file is treated as untrusted.

Three formats load through ``load_model``:

- this project's Lightning checkpoints: ``state_dict`` under ``net.*`` plus ``architecture``
  (``{"name", "config", "strategy"}``, written by the matting task), rebuilt only when the
  name is in the allow-list of ``models.registry`` (older checkpoints carry ``p3m_net``, the
  P3M-Net architecture);
- the published P3M-Net format: ``{"state_dict": ...}`` with the reference's 713 names, where
  the encoder appears twice (``resnet.*`` and its aliases ``encoder0..4.*``), optionally with
  every key prefixed ``module.`` (DataParallel);
- a bare or released state dict of any registered method (``architecture="gfm"``, ...), in
  the authors' names where they released a checkpoint; P3M-Net's is the default.

Files are read with ``torch.load(weights_only=True)``: a file whose unpickling would construct
arbitrary Python objects (and so could run code) is refused before anything in it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from p3m_lightning.atomic import atomic_path
from p3m_lightning.models.bn_folding import fuse_conv_bn
from p3m_lightning.models.registry import architecture_of, build_architecture, get_architecture
from p3m_lightning.models.safe_load import CheckpointError, read_checkpoint, tensor_state

ARCHITECTURE_KEY = "architecture"
"""Key under which the project's checkpoints store ``architecture_record(net)``."""

LEGACY_ARCH_KEY = "p3m_net"
"""Key of ``P3MNet.arch_config()`` in checkpoints written before the architecture registry."""

DEFAULT_ARCHITECTURE = "p3m_net"


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _summarise(names: list[str]) -> str:
    shown = ", ".join(names[:20])
    return f"{shown}{' ...' if len(names) > 20 else ''} ({len(names)} in all)"


def architecture_record(
    net: nn.Module, strategy: str | dict[str, Any] | None = None, channels_last: bool = False
) -> dict[str, Any]:
    """What a checkpoint stores to rebuild ``net``: registered name, config, strategy (a name,
    or ``{"name", **params}`` where its parameters are not the defaults) and the memory format
    it was evaluated in.

    Raises:
        ValueError: ``net``'s class is not registered.
    """
    architecture = architecture_of(net)
    return {
        "name": architecture.name,
        "config": net.arch_config(),
        "strategy": strategy or architecture.default_strategy,
        "channels_last": bool(channels_last),
    }


def load_state_into(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    name: str = "P3M-Net",
    assign: bool = False,
) -> None:
    """Load ``state`` (this project's names) into ``model`` strictly, reporting by name.

    Args:
        model: the network.
        state: its weights and buffers.
        source: the file, for messages.
        name: the architecture, for messages.
        assign: make ``state``'s tensors the model's (``nn.Module.load_state_dict``'s
            ``assign``) instead of copying them into it: for a freshly built model whose
            ``state`` has its dtypes and memory formats (``_like_own``).

    Raises:
        CheckpointError: naming missing, unexpected and mis-shaped keys.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshaped = [
        f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_summarise(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_summarise(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped keys: {_summarise(misshaped)}")
    if problems:
        p3m_net = name == "P3M-Net"
        encoder = getattr(model, "encoder", None)
        detail = f" ({type(encoder).__name__} encoder)" if p3m_net else ""
        hint = "; if it is another method's checkpoint, name it with architecture=<name>"
        hint = hint if p3m_net else ""
        raise CheckpointError(
            f"{source}: does not match the {name} architecture{detail}; "
            + "; ".join(problems)
            + hint
        )
    model.load_state_dict(state, strict=True, assign=assign)


def _like_own(
    state: dict[str, torch.Tensor], model: nn.Module, channels_last: bool
) -> dict[str, torch.Tensor]:
    """``state`` in ``model``'s dtypes, 4-D tensors channels-last where ``channels_last``:
    what ``load_state_dict(assign=True)`` may take as the model's own tensors."""
    own = model.state_dict()
    out = {}
    for key, value in state.items():
        if key in own and isinstance(value, torch.Tensor):
            value = value.to(own[key].dtype)
            if channels_last and value.dim() == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


@dataclass
class LoadedModel:
    """A network rebuilt from a checkpoint, with what the checkpoint says about it.

    Attributes:
        net: the network, in eval mode, weights loaded.
        architecture: its registered name (``p3m_net``, ``gfm``, ...).
        strategy: the inference strategy it was trained and validated with (the checkpoint's),
            else the architecture's published protocol.
        channels_last: the network is in channels-last memory format (what the checkpoint
            records it was evaluated in, else the architecture's inference layout); feed it
            inputs in the same format to recompute its figures exactly.
    """

    net: nn.Module
    architecture: str
    strategy: str | dict[str, Any]
    channels_last: bool = False


def _net_state(raw: dict, path: str | Path) -> dict[str, torch.Tensor]:
    """The network's tensors of a read checkpoint: a project checkpoint's ``net.*`` entries
    (prefix removed), else the whole (published or bare) state dict."""
    state = tensor_state(raw, path)
    if isinstance(raw.get(ARCHITECTURE_KEY), dict) or isinstance(raw.get(LEGACY_ARCH_KEY), dict):
        state = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    return state


def load_weights(net: nn.Module, path: str | Path) -> str:
    """Load the weights of checkpoint ``path`` into ``net`` in place, strictly: a checkpoint of
    this project (Lightning's ``last.ckpt``, ...) or a published / bare state dict of ``net``'s
    architecture (its authors' names, as ``load_checkpoint`` reads them).

    Returns:
        The architecture's registered name.

    Raises:
        FileNotFoundError, CheckpointError: no such file, unreadable or unsafe, a checkpoint
            of another architecture (named), or names and shapes that do not match.
    """
    raw = read_checkpoint(path)
    name = architecture_of(net).name
    record = raw.get(ARCHITECTURE_KEY)
    if isinstance(record, dict) and record.get("name") != name:
        raise CheckpointError(
            f"{path}: a checkpoint of the {record.get('name')} architecture, and this run "
            f"builds {name}; choose the model config it was trained with (model=...)"
        )
    state = get_architecture(name).from_published(_net_state(raw, path))
    load_state_into(net, state, str(path), "P3M-Net" if name == DEFAULT_ARCHITECTURE else name)
    return name


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    net: nn.Module | None = None,
    fuse_bn: bool = False,
    architecture: str | None = None,
    architecture_config: dict[str, Any] | None = None,
) -> LoadedModel:
    """Load any registered matting network from a checkpoint, in eval mode.

    Args:
        path: the checkpoint file.
        map_location: device for the loaded tensors.
        net: a network to load into (its architecture must be registered); needed only for
            a bare state dict of a non-default configuration.
        fuse_bn: fold BatchNorm into the convolutions of a P3M-Net (``fuse_conv_bn``): faster
            inference, but the model can then no longer be trained or saved in the published
            format. Other architectures are left as they are.
        architecture: the registered name for a file that does not say it (a bare or released
            state dict); default ``p3m_net``. A project checkpoint names its own.
        architecture_config: the config of ``architecture`` (e.g. ``{"backbone": "swin_t"}``);
            default: the released size.

    Raises:
        FileNotFoundError, CheckpointError: with the file and the reason.
    """
    raw = read_checkpoint(path, map_location)
    record = raw.get(ARCHITECTURE_KEY)
    legacy = raw.get(LEGACY_ARCH_KEY)
    state = _net_state(raw, path)
    strategy = None
    given = net is not None
    if net is not None:
        name = architecture_of(net).name
    elif isinstance(record, dict):
        name, config = str(record.get("name")), record.get("config") or {}
        strategy = record.get("strategy")
        net = build_architecture(name, config, str(path))
    elif isinstance(legacy, dict):
        name = DEFAULT_ARCHITECTURE
        net = build_architecture(name, legacy, str(path))
    else:
        name = architecture or DEFAULT_ARCHITECTURE
        net = build_architecture(name, architecture_config, str(path))
    entry = get_architecture(name)
    state = entry.from_published(state)
    # The memory format the network was evaluated in, so that its figures are recomputed
    # exactly (a file that does not say: the architecture's fast inference layout).
    recorded = record.get("channels_last") if isinstance(record, dict) else None
    channels_last = bool(entry.channels_last if recorded is None else recorded)
    # A network built here takes the file's tensors as its own (already in its layout)
    # rather than copying them into its random initial weights: one copy of the weights
    # fewer, in time (about 0.5 s for P3M-Net) and in peak memory. A caller's ``net`` keeps
    # its own parameters.
    assign = not given
    if assign:
        state = _like_own(state, net, channels_last)
    label = "P3M-Net" if name == DEFAULT_ARCHITECTURE else name
    load_state_into(net, state, str(path), label, assign=assign)
    net = net.to(map_location).eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if fuse_bn and name == DEFAULT_ARCHITECTURE:
        net = fuse_conv_bn(net)
    strategy = strategy or entry.default_strategy
    strategy = strategy if isinstance(strategy, dict) else str(strategy)
    return LoadedModel(net, name, strategy, channels_last)


def load_model(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    net: nn.Module | None = None,
    fuse_bn: bool = False,
    architecture: str | None = None,
    architecture_config: dict[str, Any] | None = None,
) -> nn.Module:
    """Load a matting network from a checkpoint, in eval mode (``load_checkpoint(...).net``).

    A P3M-Net comes back in channels-last memory format, the fast layout for inference.

    Args:
        path: the checkpoint file: a published P3M-Net ``.pth``, a bare or released state
            dict (``architecture=`` names a method other than P3M-Net), or a Lightning
            checkpoint of this project (it names its architecture).
        map_location: device for the loaded tensors.
        net: an architecture to load into; needed only for a bare state dict of a non-default
            configuration (project checkpoints describe their architecture).
        fuse_bn: fold BatchNorm into the convolutions of a P3M-Net (``fuse_conv_bn``).
        architecture: registered name for a file that does not say it; default ``p3m_net``.
        architecture_config: its config; default the released size.

    Raises:
        FileNotFoundError, CheckpointError: with the file and the reason.
    """
    return load_checkpoint(path, map_location, net, fuse_bn, architecture, architecture_config).net
