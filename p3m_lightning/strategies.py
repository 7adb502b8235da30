"""The allow-list of inference strategies a config or a checkpoint may name.

Validation and test in ``MattingTask``, ``eval.py``, ``predict.py`` and ``Matter`` all run the
model through one of these, so a method's published test protocol is written once: the generic
ones in ``p3m_lightning.inference``, a method's own in its folder
(``p3m_lightning/methods/<method>/inference.py``). A model config chooses its strategy by name
(``strategy: resize``) or as a Hydra component
(``strategy: {_target_: p3m_lightning.inference.Resize, scale: 1.0}``); checkpoints record the
name and parameters, and ``STRATEGIES`` is the list a name is looked up in (checkpoints are
untrusted input: a name can only choose one of these classes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from p3m_lightning.inference import MAX_SIDE, InferenceStrategy, Resize, TrimapGuided
from p3m_lightning.methods.basic.inference import BASICOfficial
from p3m_lightning.methods.fba.inference import FBAResize
from p3m_lightning.methods.gca.inference import GCAPad
from p3m_lightning.methods.gfm.inference import GFMHybrid
from p3m_lightning.methods.indexnet.inference import IndexNetResize
from p3m_lightning.methods.modnet.inference import MODNetResize
from p3m_lightning.methods.p3m_net.inference import P3MHybrid

__all__ = ["PHOTO_RESAMPLING", "STRATEGIES", "InferenceStrategy", "build_strategy", "for_photos"]

PHOTO_RESAMPLING = ("fast", "official")
"""Resampling choices for one's own photos (``predict.py``, ``Matter``): ``fast`` (torch's
antialiased bilinear, where a strategy resizes) or ``official`` (the method's test script's
own, as evaluation always uses)."""

STRATEGIES: dict[str, type[InferenceStrategy]] = {
    cls.name: cls
    for cls in (
        Resize,
        P3MHybrid,
        GFMHybrid,
        MODNetResize,
        TrimapGuided,
        BASICOfficial,
        GCAPad,
        IndexNetResize,
        FBAResize,
    )
}
"""The strategies a name (in a config or a checkpoint) may ask for."""


def build_strategy(
    spec: str | Mapping[str, Any] | InferenceStrategy, max_side: int | None = None
) -> InferenceStrategy:
    """A strategy from its name in ``STRATEGIES``, a ``{"name", **params}`` record (what a
    checkpoint stores, ``InferenceStrategy.spec``) or an already built component.

    Args:
        spec: a name of ``STRATEGIES``, a record with the strategy's parameters, or an
            ``InferenceStrategy``.
        max_side: cap on each side the network sees (``None``: the default).

    Raises:
        ValueError: an unknown name or parameter, naming the known ones.
    """
    if isinstance(spec, InferenceStrategy):
        if max_side is not None:
            spec.max_side = int(max_side)
        return spec
    params: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        params = {k: v for k, v in spec.items() if k != "name"}
        spec = str(spec.get("name"))
    name = str(spec)
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    cls = STRATEGIES[name]
    known = set(cls().params())
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"strategy {name}: unknown parameters {unknown}; known: {sorted(known)}")
    return cls(**params, max_side=MAX_SIDE if max_side is None else int(max_side))


def for_photos(strategy: InferenceStrategy, resampling: str) -> InferenceStrategy:
    """``strategy`` with the resampling chosen for one's own photos (``PHOTO_RESAMPLING``).

    ``fast`` swaps a strategy's scikit-image resampling for torch's (about 10x faster, a
    slightly different matte: see the README); ``official`` and strategies that do not resize
    (or resize their own way) are returned as they are.

    Raises:
        ValueError: an unknown choice.
    """
    if resampling not in PHOTO_RESAMPLING:
        raise ValueError(f"resampling must be one of {PHOTO_RESAMPLING}, got {resampling!r}")
    params = strategy.params()
    if resampling == "official" or "resampling" not in params:
        return strategy
    return type(strategy)(**{**params, "resampling": "torch"}, max_side=strategy.max_side)
