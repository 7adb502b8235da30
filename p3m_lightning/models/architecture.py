"""``Architecture``: one entry of the checkpoint allow-list (``p3m_lightning.models.registry``).

A leaf module: each method's package (``p3m_lightning/methods/<method>/__init__.py``) declares
its entry with plain names and import paths, resolved only when a network is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from torch import nn

__all__ = ["Architecture", "resolve"]


@dataclass(frozen=True)
class Architecture:
    """One registered matting architecture.

    Attributes:
        name: the name checkpoints and ``load_model(architecture=...)`` use.
        target: ``"module:Class"`` of the network; called with the config as keyword
            arguments unless ``builder`` is given.
        default_strategy: the inference strategy of its published test protocol: a name of
            ``p3m_lightning.strategies.STRATEGIES`` or ``{"name", **params}``.
        photo_strategy: the strategy recommended for one's own photos, where it differs
            (P3M-Net: ``hybrid``); ``None``: ``default_strategy``.
        builder: optional ``"module:function"`` taking the config dict (for architectures
            whose config nests components, e.g. P3M-Net's encoder).
        published: optional ``"module:function"`` translating the authors' released state
            dict into this project's names (``{name: tensor} -> {name: tensor}``).
        description: one line for listings and errors.
        not_exportable: why the network does not export to ONNX / TorchScript with dynamic
            height and width (``None``: it does; checked against ONNX Runtime by the tests).
        channels_last: inference runs in channels-last memory format when a file does not
            say (oneDNN/cuDNN run P3M-Net's convolutions about 1.8x faster in it).
    """

    name: str
    target: str
    default_strategy: str | dict[str, Any]
    photo_strategy: str | None = None
    builder: str | None = None
    published: str | None = None
    description: str = ""
    not_exportable: str | None = None
    channels_last: bool = False

    def resolve(self) -> type[nn.Module]:
        """The class ``target`` names."""
        return resolve(self.target)

    def build(self, config: dict[str, Any] | None = None) -> nn.Module:
        """A fresh network of this architecture (random weights)."""
        config = dict(config or {})
        if self.builder is not None:
            return resolve(self.builder)(config)
        return self.resolve()(**config)

    def from_published(self, state: dict[str, Any]) -> dict[str, Any]:
        """``state`` in this project's names (unchanged when the names already agree)."""
        return state if self.published is None else resolve(self.published)(state)


def resolve(path: str) -> Any:
    """The object ``"module:attribute"`` names."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)
