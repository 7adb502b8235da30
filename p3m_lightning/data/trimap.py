"""The trimap of an alpha matte: the one rule used for training, evaluation and synthetic data.

Plain numpy/OpenCV, no torch, so light tools (the synthetic generator) can use it.
"""

from __future__ import annotations

import cv2
import numpy as np


def _ellipse(kernel_size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))


def generate_trimap(alpha_u8: np.ndarray, kernel_size: int) -> np.ndarray:
    """Trimap of an 8-bit alpha matte, as the reference generates it online.

    Foreground is ``erode(alpha == 255)``, and everything within ``dilate(alpha > 0)`` that is not
    foreground is unknown; both with an elliptical ``kernel_size x kernel_size`` kernel.

    Args:
        alpha_u8: (H, W) uint8 alpha in [0, 255].
        kernel_size: Side of the elliptical structuring element, >= 1.

    Returns:
        (H, W) uint8 trimap: 255 foreground, 128 unknown, 0 background.
    """
    if alpha_u8.ndim != 2 or alpha_u8.dtype != np.uint8:
        raise ValueError(f"alpha must be an HxW uint8 array, got {alpha_u8.dtype} {alpha_u8.shape}")
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    kernel = _ellipse(kernel_size)
    fg = cv2.erode((alpha_u8 == 255).view(np.uint8), kernel)
    unknown_or_fg = cv2.dilate((alpha_u8 > 0).view(np.uint8), kernel)
    # erode(alpha == 255) lies inside dilate(alpha > 0), so this is the reference's
    # 255 * erode + 128 * (dilate - erode).
    trimap = unknown_or_fg * np.uint8(128)
    trimap[fg.view(bool)] = 255
    return trimap


def trimap_window(
    alpha_u8: np.ndarray, kernel_size: int, rows: tuple[int, int], cols: tuple[int, int]
) -> np.ndarray:
    """``generate_trimap(alpha_u8, kernel_size)[r0:r1, c0:c1]`` without the whole image's cost.

    The morphology runs on the window grown by the kernel's reach (clipped to the image), which
    is exact: OpenCV ignores pixels beyond the image border in erosion and dilation, and every
    window pixel sees all the input its kernel covers.

    Args:
        alpha_u8: (H, W) uint8 alpha.
        kernel_size: As for `generate_trimap`.
        rows: ``(r0, r1)`` with ``0 <= r0 < r1 <= H``.
        cols: ``(c0, c1)`` with ``0 <= c0 < c1 <= W``.

    Returns:
        (r1 - r0, c1 - c0) uint8 trimap.
    """
    h, w = alpha_u8.shape
    (r0, r1), (c0, c1) = rows, cols
    # OpenCV anchors a k x k kernel at k // 2: it reaches k // 2 before and k - 1 - k // 2 after.
    reach = kernel_size // 2
    top, left = max(r0 - reach, 0), max(c0 - reach, 0)
    padded = alpha_u8[top : min(r1 + reach, h), left : min(c1 + reach, w)]
    return generate_trimap(padded, kernel_size)[r0 - top : r1 - top, c0 - left : c1 - left]
