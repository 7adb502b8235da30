"""GCA-Matting's adaptive gradient clipping (official ``trainer.py:143-145,204-212`` at
Yaoyi-Li/GCA-Matting@5a999be, ``clip_grad = true`` in ``config/gca-dist.toml:18``).

The first step clips the gradient norm at 1e6 (in effect not at all) and takes that norm as the
moving maximum; every later step clips at twice the moving maximum, then updates it as
``moving_max = 0.999 moving_max + 0.001 norm`` with the step's norm before clipping. The
training task applies it to the optimiser's parameters after each backward pass
(``MattingTask(gradient_clipping=...)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["MovingMaxClipping"]


class MovingMaxClipping:
    """Clip the gradient norm at ``factor`` times its moving maximum.

    Args:
        factor: Multiple of the moving maximum the norm is clipped at (2 officially).
        momentum: Weight of the old moving maximum in its update (0.999 officially).
        first_max_norm: Clipping norm of the first step, which starts the moving maximum
            (1e6 officially).
    """

    def __init__(
        self, factor: float = 2.0, momentum: float = 0.999, first_max_norm: float = 1e6
    ) -> None:
        if factor <= 0 or not 0 <= momentum < 1 or first_max_norm <= 0:
            raise ValueError(
                "MovingMaxClipping needs factor > 0, 0 <= momentum < 1 and first_max_norm > 0, "
                f"got {factor}, {momentum}, {first_max_norm}"
            )
        self.factor = factor
        self.momentum = momentum
        self.first_max_norm = first_max_norm
        self.moving_max: Tensor | None = None

    def __call__(self, parameters: Iterable[nn.Parameter]) -> Tensor:
        """Clip the gradients of ``parameters`` in place.

        Returns:
            The total gradient norm before clipping (a 0-d tensor).
        """
        params = [p for p in parameters if p.grad is not None]
        if self.moving_max is None:
            norm = nn.utils.clip_grad_norm_(params, self.first_max_norm)
            self.moving_max = norm.detach()
            return norm
        # A tensor bound, as the official code passes it: no device-to-host sync per step.
        norm = nn.utils.clip_grad_norm_(params, self.factor * self.moving_max)
        self.moving_max = self.momentum * self.moving_max + (1 - self.momentum) * norm.detach()
        return norm

    def state_dict(self) -> dict[str, Any]:
        """The moving maximum (None before the first step), for an exact resume."""
        return {"moving_max": None if self.moving_max is None else float(self.moving_max)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict`'s moving maximum."""
        value = state.get("moving_max")
        self.moving_max = None if value is None else torch.tensor(value)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(factor={self.factor}, momentum={self.momentum}, "
            f"first_max_norm={self.first_max_norm})"
        )
