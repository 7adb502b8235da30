"""Learning-rate schedules composed from torch's, for recipes that chain them.

Hydra builds a scheduler as a partial that takes the optimiser; torch's ``SequentialLR`` needs
its parts already built on that optimiser, so `sequential` builds them from partials too. A
recipe then reads as torch's own pieces, e.g. GCA's linear warm-up then cosine decay
(``conf/model/gca.yaml``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, SequentialLR

__all__ = ["sequential"]


def sequential(
    optimizer: Optimizer,
    schedulers: Sequence[Callable[[Optimizer], LRScheduler]],
    milestones: Sequence[int],
) -> SequentialLR:
    """torch's ``SequentialLR`` over schedulers built from factories on ``optimizer``.

    Args:
        optimizer: The optimiser every part schedules.
        schedulers: Factories (Hydra partials) taking the optimiser, in the order they run.
        milestones: The scheduler steps at which the next part takes over
            (``len(schedulers) - 1`` increasing values).

    Returns:
        The chained scheduler; it counts epochs or optimiser steps as the task steps it
        (``MattingTask(scheduler_interval=...)``).

    Raises:
        ValueError: ``milestones`` does not hold one step per hand-over.
    """
    if len(milestones) != len(schedulers) - 1:
        raise ValueError(
            f"a sequential schedule of {len(schedulers)} parts needs {len(schedulers) - 1} "
            f"milestone(s), got {list(milestones)}: set model.scheduler.milestones"
        )
    return SequentialLR(optimizer, [make(optimizer) for make in schedulers], list(milestones))
