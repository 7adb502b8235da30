"""The floor of ``make bench``'s prediction figures: FLOPs counted on the path predict.py runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from p3m_lightning.bench.predict import gemm_gflops, strategy_gflop
from p3m_lightning.inference import MAX_SIDE, network_size
from p3m_lightning.models.checkpoint import load_model


def _network_gflop(ckpt: Path, size: tuple[int, int], outputs: tuple[str, ...]) -> float:
    model = load_model(ckpt, fuse_bn=True)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, 3, *size), outputs=outputs, band_rows=0)
    return counter.get_total_flops() / 1e9


def test_strategy_flops_are_those_of_its_network_passes(ckpt: Path, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 360, 3), np.uint8)).save(photo)
    resize = strategy_gflop(ckpt, photo, "resize")
    assert resize == _network_gflop(ckpt, network_size(200, 360, 0.5, MAX_SIDE), ("alpha",))
    hybrid = strategy_gflop(ckpt, photo, "hybrid")
    half = _network_gflop(ckpt, network_size(200, 360, 0.5, MAX_SIDE), ("global_logits",))
    full = _network_gflop(ckpt, network_size(200, 360, 1.0, MAX_SIDE), ("local",))
    # At this size the full pass is one band: no recomputed halo rows.
    assert hybrid == pytest.approx(half + full, rel=1e-12)
    assert hybrid > resize > 0


def test_gemm_rate_is_a_plausible_cpu_rate() -> None:
    # Between a slow core's 1 GFLOP/s and far beyond any CPU's fp32 peak.
    assert 1 < gemm_gflops(size=512) < 1e5
