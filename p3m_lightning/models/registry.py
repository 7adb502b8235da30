"""The allow-list of matting architectures a checkpoint may ask to rebuild.

A checkpoint of this project names its architecture (``{"name": ..., "config": {...}}``);
``build_architecture`` rebuilds it only when the name is registered here, from plain config
values: nothing in a file chooses which Python code runs. A new method registers itself with
one ``register_architecture`` call in its package (see docs/adding-a-model.md).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from p3m_lightning.methods import BUILTIN_ARCHITECTURES
from p3m_lightning.models.architecture import Architecture
from p3m_lightning.models.safe_load import CheckpointError

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "architecture_of",
    "build_architecture",
    "get_architecture",
    "register_architecture",
]


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in BUILTIN_ARCHITECTURES}
"""Every architecture a checkpoint may name: the built-in methods, then plug-ins' own."""


def register_architecture(architecture: Architecture) -> Architecture:
    """Add ``architecture`` to the allow-list (a name may be registered once)."""
    known = ARCHITECTURES.get(architecture.name)
    if known is not None and known != architecture:
        raise ValueError(f"architecture {architecture.name!r} is already registered: {known}")
    ARCHITECTURES[architecture.name] = architecture
    return architecture


def _lookup(name: str, source: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise CheckpointError(
            f"{source}: unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        )
    return ARCHITECTURES[name]


def build_architecture(
    name: str, config: dict[str, Any] | None = None, source: str = "architecture"
) -> nn.Module:
    """Rebuild a registered architecture from plain config values.

    Raises:
        CheckpointError: an unknown name, or a config the architecture rejects (with
            ``source``, e.g. the checkpoint file, in the message).
    """
    architecture = _lookup(name, source)
    if config is not None and not isinstance(config, dict):
        raise CheckpointError(f"{source}: the {name} config is not a mapping")
    try:
        return architecture.build(without_initialisation(config or {}))
    # Whatever the constructor raises on values it rejects (negative widths: RuntimeError).
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"{source}: cannot build {name} from {config!r}: {err}") from None


_INITIALISATION_KEYS = frozenset({"pretrained_path", "weights_path", "pretrained"})


def without_initialisation(config: Any) -> Any:
    """``config`` less the keys that read weights from a path or the hub (at any depth): a
    network rebuilt for a checkpoint takes its weights from the checkpoint, and a file must
    not make the loader read other files or go online."""
    if isinstance(config, dict):
        return {
            k: without_initialisation(v) for k, v in config.items() if k not in _INITIALISATION_KEYS
        }
    if isinstance(config, list):
        return [without_initialisation(v) for v in config]
    return config


def architecture_of(net: nn.Module) -> Architecture:
    """The registered architecture ``net`` is an instance of.

    Raises:
        ValueError: ``net``'s class is not registered (it could not be rebuilt from a file).
    """
    cls = type(net)
    for architecture in ARCHITECTURES.values():
        if architecture.resolve() is cls:
            return architecture
    raise ValueError(
        f"{cls.__module__}.{cls.__qualname__} is not a registered architecture; register it "
        "with p3m_lightning.models.registry.register_architecture (docs/adding-a-model.md)"
    )


def get_architecture(name: str) -> Architecture:
    """The registered architecture called ``name``.

    Raises:
        CheckpointError: an unknown name, listing the known ones.
    """
    return _lookup(name, "architecture")
