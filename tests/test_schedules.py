"""The chained learning-rate schedule built from Hydra partials."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from p3m_lightning.schedules import sequential


def _optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_sequential_builds_each_part_on_the_optimizer() -> None:
    optimizer = _optimizer()
    scheduler = sequential(
        optimizer,
        [
            partial(torch.optim.lr_scheduler.ConstantLR, factor=0.5, total_iters=2),
            partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.1),
        ],
        milestones=[2],
    )
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.5, 0.5, 1.0, 0.1])


def test_sequential_needs_one_milestone_per_hand_over() -> None:
    with pytest.raises(ValueError, match="needs 1 milestone"):
        sequential(_optimizer(), [torch.optim.lr_scheduler.ConstantLR] * 2, milestones=[])
