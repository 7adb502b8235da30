"""Checks of the matting-model contract shared by every network (docs/adding-a-model.md)."""

from __future__ import annotations

import torch
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


def example_inputs(
    net: nn.Module, height: int, width: int, device: torch.device | str = "cpu"
) -> tuple[Tensor, ...]:
    """Seeded inputs for ``net`` in its ``inputs`` order (for tracing, FLOP counts, timing): a
    normalised image, a background plate, a trimap with all three levels."""
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "image": torch.randn(1, 3, height, width, generator=gen),
        "bg": torch.randn(1, 3, height, width, generator=gen),
        "trimap": torch.full((1, 1, height, width), 128.0),
    }
    tensors["trimap"][..., : height // 4, :] = 0.0
    tensors["trimap"][..., height // 2 :, width // 4 : 3 * width // 4] = 255.0
    return tuple(tensors[k].to(device) for k in getattr(net, "inputs", ("image",)))
