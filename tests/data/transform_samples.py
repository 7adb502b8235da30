"""A crafted training sample for the transform tests: every map derived from one alpha and
two coordinate ramps, so a misaligned crop, flip or resize shows."""

from __future__ import annotations

import numpy as np


def crafted_sample(height: int, width: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Image, alpha, F and B all derived from one asymmetric alpha and two coordinate ramps.

    alpha: a soft-edged off-centre ellipse plus a hard-edged square (all three trimap regions).
    image = (alpha, x, y), fg = (x, alpha, y), bg = (y, x, alpha): after any correct crop, flip
    and resize, the channels that hold the same quantity must still be equal, exactly, because
    the same bilinear resize of the same uint8 values gives the same result.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = rng.uniform(0.35, 0.55) * height, rng.uniform(0.3, 0.5) * width
    ry, rx = 0.3 * height, 0.22 * width
    distance = (np.hypot((y - cy) / ry, (x - cx) / rx) - 1) * min(ry, rx)
    alpha = np.clip(0.5 - distance / 8, 0, 1)
    s0, s1 = int(0.75 * height), int(0.7 * width)
    alpha[s0 : s0 + height // 8, s1 : s1 + width // 6] = 1
    alpha = np.rint(alpha * 255).astype(np.uint8)
    ramp_x = np.rint(x * 255 / (width - 1)).astype(np.uint8)
    ramp_y = np.rint(y * 255 / (height - 1)).astype(np.uint8)
    return {
        "image": np.dstack([alpha, ramp_x, ramp_y]),
        "alpha": alpha,
        "fg": np.dstack([ramp_x, alpha, ramp_y]),
        "bg": np.dstack([ramp_y, ramp_x, alpha]),
    }
