"""P3M-Net's training step (forward, loss, backward, Adam) in each memory format and Adam kernel.

Every setting starts from the same weights and trains on the same batch of synthetic portraits;
the settings are timed in turn, round after round, in one process, and each is reported as the
median over rounds of its step time divided by the NCHW step's of the same round (this machine's
speed drifts over minutes). The loss trajectories of a few steps from the same start say whether
a setting computes the same training, up to float noise.
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from p3m_lightning.data.synthetic import render_portrait, trimap_from_alpha
from p3m_lightning.methods.p3m_net.loss import P3MLoss
from p3m_lightning.methods.p3m_net.network import P3MNet
from p3m_lightning.normalization import normalize

LR = 1.0e-5
"""The published learning rate (conf/model/p3m_r34.yaml)."""


@dataclass(frozen=True)
class StepSetting:
    """How one training step runs.

    Attributes:
        channels_last: network and inputs in channels-last memory format.
        adam: keywords of ``torch.optim.Adam`` besides the learning rate (``foreach``,
            ``fused``); empty: PyTorch's default, the per-tensor loop on CPU.
    """

    channels_last: bool = False
    adam: dict[str, Any] = field(default_factory=dict)


BASELINE = "NCHW, Adam"
SETTINGS: dict[str, StepSetting] = {
    BASELINE: StepSetting(),
    "channels-last, Adam": StepSetting(channels_last=True),
    "NCHW, Adam foreach": StepSetting(adam={"foreach": True}),
    "NCHW, Adam fused": StepSetting(adam={"fused": True}),
    "channels-last, Adam fused": StepSetting(channels_last=True, adam={"fused": True}),
}
"""Name -> setting; the first is the baseline, training's setting before issue 20."""


def portrait_batch(batch_size: int, size: int, seed: int = 0) -> dict[str, Tensor]:
    """A training batch of synthetic portraits: what P3MLoss reads, in the datamodule's units.

    Returns:
        ``image``, ``fg``, ``bg``: ``(B, 3, size, size)`` ImageNet-normalised; ``alpha``:
        ``(B, 1, size, size)`` in [0, 1]; ``trimap``: ``(B, 1, size, size)`` in {0, 128, 255}.
    """
    rng = np.random.default_rng(seed)
    samples = [render_portrait(size, size, rng) for _ in range(batch_size)]

    def rgb(key: str) -> Tensor:
        arrays = np.stack([getattr(s, key) for s in samples])
        return normalize(torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255)

    alpha = torch.from_numpy(np.stack([s.alpha for s in samples]))[:, None]
    trimap = np.stack([trimap_from_alpha(s.alpha) for s in samples])
    return {
        "image": rgb("image"),
        "fg": rgb("fg"),
        "bg": rgb("bg"),
        "alpha": alpha.float() / 255,
        "trimap": torch.from_numpy(trimap)[:, None].float(),
    }


class TrainingStep:
    """One network, loss and Adam, stepping on a batch as ``MattingTask`` trains.

    Args:
        net: the network in train mode (deep-copied, so settings start from the same weights).
        setting: memory format and Adam kernel.
        lr: Adam's learning rate.
    """

    def __init__(self, net: nn.Module, setting: StepSetting, lr: float = LR) -> None:
        self.fmt = torch.channels_last if setting.channels_last else torch.contiguous_format
        # As MattingTask: the network is converted only for channels-last.
        self.net = copy.deepcopy(net).train()
        if setting.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.loss = P3MLoss()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr, **setting.adam)

    def __call__(self, batch: dict[str, Tensor]) -> float:
        """Forward, loss, backward and an Adam step on ``batch``; returns the loss before it."""
        out = self.net(batch["image"].contiguous(memory_format=self.fmt))
        loss = self.loss(out, batch)["loss"]
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def loss_trajectory(
    net: nn.Module, setting: StepSetting, batch: dict[str, Tensor], steps: int, lr: float = LR
) -> list[float]:
    """The losses of ``steps`` training steps on ``batch`` from ``net``'s weights."""
    torch.manual_seed(0)
    step = TrainingStep(net, setting, lr)
    return [step(batch) for _ in range(steps)]


def max_relative_difference(a: list[float], b: list[float]) -> float:
    """Largest ``|a_i - b_i| / |b_i|`` over two trajectories."""
    return max(abs(x - y) / abs(y) for x, y in zip(a, b, strict=True))


def step_ratios(
    net: nn.Module, settings: dict[str, StepSetting], batch: dict[str, Tensor], rounds: int
) -> tuple[float, dict[str, float]]:
    """Median baseline step time, and each setting's median ratio to the baseline's step.

    The first setting is the baseline. Every round times one step of each setting in turn,
    after one untimed warm-up round; a ratio is taken within its round.
    """
    steps = {name: TrainingStep(net, s) for name, s in settings.items()}
    for step in steps.values():
        step(batch)
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step(batch)
            seconds[name].append(time.perf_counter() - start)
    base = seconds[next(iter(settings))]
    ratios = {
        name: statistics.median(t / b for t, b in zip(times, base, strict=True))
        for name, times in seconds.items()
    }
    return statistics.median(base), ratios


def run(
    batch_size: int = 2,
    size: int = 256,
    rounds: int = 3,
    steps: int = 5,
    trajectory_size: int = 128,
) -> None:
    """Print each setting's training step against the NCHW step (``size`` crops), and its loss
    trajectory's largest relative difference from the NCHW one (``trajectory_size`` crops,
    smaller to keep ``make bench`` to minutes)."""
    print(
        f"== P3M-Net training step (forward, loss, backward, Adam lr {LR:g}), batch "
        f"{batch_size} x 3 x {size} x {size}, full width, {torch.get_num_threads()} threads =="
    )
    torch.manual_seed(0)
    net = P3MNet().train()
    batch = portrait_batch(batch_size, size)
    base_s, ratios = step_ratios(net, SETTINGS, batch, rounds)
    small = portrait_batch(batch_size, trajectory_size)
    trajectories = {name: loss_trajectory(net, s, small, steps) for name, s in SETTINGS.items()}
    print(f"NCHW step: {base_s:.2f} s (median of {rounds}); ratios are medians of per-round ratios")
    print(f"loss trajectories: {steps} steps at {trajectory_size}x{trajectory_size}")
    print(f"{'setting':<28}{'step vs NCHW':>14}{'speed-up':>10}{'loss max rel. diff':>20}")
    for name, ratio in ratios.items():
        diff = max_relative_difference(trajectories[name], trajectories[BASELINE])
        print(f"{name:<28}{ratio:>14.3f}{1 / ratio:>9.2f}x{diff:>20.1e}")
    print(
        f"NCHW loss trajectory over {steps} steps: "
        + ", ".join(f"{v:.6f}" for v in trajectories[BASELINE])
    )


if __name__ == "__main__":
    run()
