"""P3M-Net's released checkpoint format (``p3mnet_pretrained_on_p3m10k.pth``).

The reference registers the ResNet layers twice: once under ``resnet.*`` and once as
``encoder0..4.*`` (docs/p3m-net.md §4), so a released file carries 713 names where this
project's ``P3MNet`` has ``encoder.*`` once.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

from p3m_lightning.methods.p3m_net.network import P3MNet
from p3m_lightning.models.checkpoint import atomic_torch_save
from p3m_lightning.models.encoders import ResNet34MP

__all__ = ["from_published", "save_published", "to_published"]

_ALIASES = (
    ("encoder0.0.", "resnet.conv1."),
    ("encoder0.1.", "resnet.bn1."),
    ("encoder1.0.", "resnet.layer1."),
    ("encoder2.", "resnet.layer2."),
    ("encoder3.", "resnet.layer3."),
    ("encoder4.", "resnet.layer4."),
)


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
