"""Checks of the matting-model contract shared by every network (docs/adding-a-model.md)."""

from __future__ import annotations

from torch import Tensor, nn


def check_divisible(net: nn.Module, image: Tensor) -> None:
    """Raise ``ValueError`` unless ``image``'s height and width are multiples of the network's
    ``input_divisor``, saying what to do (the inference strategies resize or pad to it)."""
    divisor = int(getattr(net, "input_divisor", 1))
    h, w = image.shape[-2:]
    if h % divisor or w % divisor:
        raise ValueError(
            f"{type(net).__name__} needs H and W divisible by {divisor}, got {h}x{w}; resize "
            "or pad its inputs first (the inference strategies of p3m_lightning.strategies do)"
        )
