"""Cost of every method of the benchmark at 512x512: parameters, GFLOPs and CPU forward time."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from p3m_lightning.models.contract import example_inputs as contract_inputs

SIZE = 512

METHODS: dict[str, tuple[str, dict]] = {
    "P3M-Net (ResNet-34-mp)": ("p3m_lightning.models:P3MNet", {}),
    "P3M-Net (ViTAE-S)": (
        "p3m_lightning.methods.p3m_journal:P3MJournalNet",
        {"backbone": "vitae_s"},
    ),
    "P3M-Net (Swin-T)": ("p3m_lightning.methods.p3m_journal:P3MJournalNet", {"backbone": "swin_t"}),
    "GFM (ResNet-34, TT)": ("p3m_lightning.methods.gfm:GFMNet", {}),
    "MODNet": ("p3m_lightning.methods.modnet:MODNet", {}),
    "SHM": ("p3m_lightning.methods.shm:SHMNet", {}),
    "LF": ("p3m_lightning.methods.lf:LFNet", {}),
    "HATT": ("p3m_lightning.methods.hatt:HATTNet", {}),
    "BASIC": ("p3m_lightning.methods.basic:BASICNet", {}),
    "DIM": ("p3m_lightning.methods.dim:DIMNet", {}),
    "AlphaGAN (generator)": ("p3m_lightning.methods.alphagan:AlphaGANGenerator", {}),
    "GCA": ("p3m_lightning.methods.gca:GCANet", {}),
    "IndexNet": ("p3m_lightning.methods.indexnet:IndexNet", {}),
    "FBA": ("p3m_lightning.methods.fba:FBANet", {}),
}
"""Name -> ("module:class", constructor keywords) of each method's network, full width."""


def build(target: str, kwargs: dict) -> nn.Module:
    """The network ``module:class`` built with ``kwargs``, in eval mode."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)(**kwargs).eval()


def example_inputs(net: nn.Module, size: int = SIZE) -> list[torch.Tensor]:
    """Inputs in the order of ``net.inputs``: an image, and a trimap or plate when asked."""
    return list(contract_inputs(net, size, size))


def gflops(net: nn.Module, inputs: list[torch.Tensor]) -> float:
    """GFLOPs of one forward pass (a multiply-add counts 2)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        net(*inputs)
    return counter.get_total_flops() / 1e9


def best_seconds(fn: Callable[[], object], repeats: int = 2) -> float:
    """Fastest of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run() -> None:
    """Print parameters, GFLOPs and fp32 CPU forward time of each method at 512x512."""
    print(f"== Methods at {SIZE}x{SIZE}, fp32, batch 1, {torch.get_num_threads()} threads ==")
    print(f"{'method':<26}{'params (M)':>12}{'GFLOPs':>10}{'CPU forward (s)':>17}")
    for name, (target, kwargs) in METHODS.items():
        torch.manual_seed(0)
        net = build(target, kwargs)
        inputs = example_inputs(net)
        params = sum(p.numel() for p in net.parameters()) / 1e6
        flops = gflops(net, inputs)
        with torch.inference_mode():
            seconds = best_seconds(lambda net=net, inputs=inputs: net(*inputs))
        print(f"{name:<26}{params:>12.2f}{flops:>10.1f}{seconds:>17.2f}")


if __name__ == "__main__":
    run()
