"""Reading and writing P3M-Net checkpoints; every checkpoint file is treated as untrusted.

Three formats load through ``load_model``:

- the published format: ``{"state_dict": ...}`` with the reference's 713 names, where the
  encoder appears twice (``resnet.*`` and its aliases ``encoder0..4.*``), optionally with every
  key prefixed ``module.`` (DataParallel);
- a bare state dict, published names or this project's names;
- this project's Lightning checkpoints: ``state_dict`` under ``net.*`` plus ``p3m_net``, the
  architecture written by the matting task.

Files are read with ``torch.load(weights_only=True)``: a file whose unpickling would construct
arbitrary Python objects (and so could run code) is refused before anything in it runs.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from p3m_lightning.atomic import atomic_path
from p3m_lightning.models.bn_folding import fuse_conv_bn
from p3m_lightning.models.encoders import ResNet34MP
from p3m_lightning.models.p3mnet import P3MNet, build_p3mnet
from p3m_lightning.models.safe_load import CheckpointError, read_checkpoint

ARCH_KEY = "p3m_net"
"""Key under which the project's checkpoints store ``P3MNet.arch_config()``."""

# The reference registers the ResNet layers a second time as encoder0..4 (docs/p3m-net.md §4).
_ALIASES = (
    ("encoder0.0.", "resnet.conv1."),
    ("encoder0.1.", "resnet.bn1."),
    ("encoder1.0.", "resnet.layer1."),
    ("encoder2.", "resnet.layer2."),
    ("encoder3.", "resnet.layer3."),
    ("encoder4.", "resnet.layer4."),
)


def _strip_prefix(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def from_published(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Translate published names to this project's: ``resnet.X -> encoder.X``, aliases dropped."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("resnet."):
            out["encoder." + key[len("resnet.") :]] = value
        elif not any(key.startswith(alias) for alias, _ in _ALIASES):
            out[key] = value
    return out


def to_published(model: P3MNet) -> OrderedDict[str, torch.Tensor]:
    """The published state dict of a ResNet-34-mp P3M-Net: all 713 names, aliases included.

    Order and names are those of the reference model's ``state_dict()``; an alias holds the
    very tensor of its canonical name.
    """
    if not isinstance(model.encoder, ResNet34MP):
        raise ValueError(
            "the published checkpoint format exists only for the ResNet-34-mp encoder; "
            f"this model uses {type(model.encoder).__name__}. Save a Lightning checkpoint "
            "or a bare state dict (torch.save(model.state_dict(), ...)) instead."
        )
    own = {k: v.detach() for k, v in model.state_dict().items()}
    published: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in own.items():
        if key.startswith("encoder."):
            published["resnet." + key[len("encoder.") :]] = value
    for alias, canonical in _ALIASES:
        for key in list(published):
            if key.startswith(canonical):
                published[alias + key[len(canonical) :]] = published[key]
    for key, value in own.items():
        if not key.startswith("encoder."):
            published[key] = value
    return published


def save_published(model: P3MNet, path: str | Path) -> None:
    """Write ``model`` in the published checkpoint format, ``{"state_dict": ...}``.

    The file loads in the reference code and in every tool built for
    ``p3mnet_pretrained_on_p3m10k.pth``. Written to a temporary name, then renamed.
    """
    atomic_torch_save({"state_dict": to_published(model)}, path)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _summarise(names: list[str]) -> str:
    shown = ", ".join(names[:20])
    return f"{shown}{' ...' if len(names) > 20 else ''} ({len(names)} in all)"


def load_state_into(model: P3MNet, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` (this project's names) into ``model`` strictly, reporting by name.

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
        raise CheckpointError(
            f"{source}: does not match the P3M-Net architecture "
            f"({type(model.encoder).__name__} encoder); " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=True)


def load_model(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    net: P3MNet | None = None,
    fuse_bn: bool = False,
) -> P3MNet:
    """Load a P3M-Net from a published, bare or Lightning checkpoint, in eval mode.

    The model comes back in channels-last memory format, the fast layout for inference.

    Args:
        path: the checkpoint file.
        map_location: device for the loaded tensors.
        net: an architecture to load into; needed only for a bare state dict of a non-default
            encoder (published and Lightning checkpoints describe their architecture).
        fuse_bn: fold BatchNorm into the convolutions (``fuse_conv_bn``): faster inference,
            but the model can then no longer be trained or saved in the published format.

    Raises:
        FileNotFoundError, CheckpointError: with the file and the reason.
    """
    raw = read_checkpoint(path, map_location)
    arch = raw.get(ARCH_KEY)
    state = raw.get("state_dict", raw)
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path}: its state_dict is not a mapping of names to tensors")
    state = _strip_prefix(state, "module.")
    if isinstance(arch, dict):
        state = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    if any(k.startswith("resnet.") for k in state):
        state = from_published(state)
    if net is None:
        net = build_p3mnet(arch) if isinstance(arch, dict) else P3MNet()
    load_state_into(net, state, str(path))
    # Channels-last lets oneDNN/cuDNN run the convolutions about 1.8x faster (see `make bench`);
    # an NCHW input is accepted and computed in channels-last.
    net = net.to(map_location).to(memory_format=torch.channels_last).eval()
    return fuse_conv_bn(net) if fuse_bn else net
