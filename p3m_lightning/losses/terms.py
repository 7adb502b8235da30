"""Loss terms several methods share (P3M-Net's, GFM's, SHM's, DIM's, ...).

Batch vocabulary (all ``float`` tensors):

- ``image``: ``(B, 3, H, W)`` ImageNet-normalised RGB.
- ``alpha``: ``(B, 1, H, W)`` ground-truth alpha in [0, 1].
- ``trimap``: ``(B, 1, H, W)`` in [0, 255]; 0 background, 255 foreground, anything else
  transition (bilinear resizing leaves in-between values on the borders).
- ``fg``, ``bg``: ``(B, 3, H, W)`` foreground and background, normalised like ``image``.

Every term is computed in float32 with autocast disabled, whatever the precision of the
predictions, so that the ``1e-12`` inside the square roots and the pyramid's small high-pass
residuals are not lost to bf16/fp16 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "alpha_loss",
    "composition_loss",
    "cross_entropy_loss",
    "laplacian_kernel",
    "laplacian_loss",
    "laplacian_pyramid",
    "no_autocast",
    "transition_alpha_loss",
    "transition_mask",
    "trimap_classes",
]

# Smooths |x| into sqrt(x^2 + eps) as the reference does, so the gradient is defined at 0.
_EPS = 1e-12


def no_autocast(x: Tensor) -> torch.autocast:
    """Autocast switched off on ``x``'s device: loss terms are computed in float32."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def trimap_classes(trimap: Tensor) -> Tensor:
    """Map a trimap to the class indices used by the cross-entropy and the transition mask.

    The trimap is first rounded to the nearest 8-bit level (ties to even): the reference stores
    it as uint8 after its bilinear resize, and rounding keeps float noise of a float resize
    (254.99998 in the middle of the foreground) from turning solid pixels into "transition".

    Args:
        trimap: ``(B, 1, H, W)`` or ``(B, H, W)``, values in [0, 255] (any float or int dtype).

    Returns:
        ``(B, H, W)`` int64: 0 where the rounded trimap is 0, 2 where it is 255, 1 elsewhere.
    """
    if trimap.dim() == 4:
        if trimap.shape[1] != 1:
            raise ValueError(f"trimap must have one channel, got shape {tuple(trimap.shape)}")
        trimap = trimap[:, 0]
    levels = torch.round(trimap.float())
    classes = torch.ones_like(levels, dtype=torch.long)
    classes[levels <= 0] = 0
    classes[levels >= 255] = 2
    return classes


def transition_mask(trimap: Tensor) -> Tensor:
    """The transition region T of a trimap as a float mask.

    Args:
        trimap: ``(B, 1, H, W)`` in [0, 255].

    Returns:
        ``(B, 1, H, W)`` float32, 1 where ``trimap_classes`` is 1 (transition), else 0.
    """
    return (trimap_classes(trimap) == 1).unsqueeze(1).float()


def laplacian_kernel(size: int = 5, sigma: float = 1.0) -> Tensor:
    """The reference's 5x5 low-pass kernel of its Laplacian loss, normalised to sum 1.

    The reference (``build_gauss_kernel``, taken from a public gist) sums the two 1-D Gaussians
    over the last axis of an ``mgrid`` instead of multiplying them, and squares
    ``exp(-t^2 / (2 sigma^2))``. The result is ``k[i][j] = g(i) + g(j)`` with
    ``g(t) = exp(-(t - c)^2 / sigma^2)`` and ``c = size // 2``: a "plus"-shaped kernel, not the
    separable Gaussian ``g(i) * g(j)``. Trained P3M-Net weights were tuned under this kernel,
    so it is kept as published.

    Args:
        size: odd kernel side.
        sigma: Gaussian width (1 in the reference).

    Returns:
        ``(1, 1, size, size)`` float32, symmetric, summing to 1.
    """
    if size % 2 != 1:
        raise ValueError(f"laplacian kernel size must be odd, got {size}")
    t = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(t**2) / sigma**2)
    kernel = g[:, None] + g[None, :]
    kernel = kernel / kernel.sum()
    return kernel.float().view(1, 1, size, size)


def laplacian_pyramid(x: Tensor, kernel: Tensor, levels: int = 5) -> list[Tensor]:
    """Laplacian pyramid of ``x``: ``levels`` band-pass images, then the last low-pass image.

    Each level filters ``x`` with ``kernel`` (replicate padding), keeps ``x - filtered`` and
    passes ``avg_pool2d(filtered, 2)`` down. The pooling uses ``ceil_mode=True``: identical to
    the reference's floor pooling on even sides (512 crops), while an odd side keeps its last
    row/column (averaged over the pixels present) and a side of 1 stays 1, so any image size,
    e.g. 40x40 or 16x16, runs through all levels instead of failing on an empty map.

    Args:
        x: ``(B, C, H, W)`` float.
        kernel: ``(1, 1, k, k)`` low-pass kernel (``laplacian_kernel()``), odd ``k``.
        levels: number of band-pass levels (5 in the reference).

    Returns:
        ``levels + 1`` tensors ``(B, C, H_l, W_l)`` with ``H_l = ceil(H / 2^l)``.
    """
    channels = x.shape[1]
    weight = kernel.to(device=x.device, dtype=x.dtype).expand(channels, 1, -1, -1)
    pad = kernel.shape[-1] // 2
    pyramid = []
    current = x
    for _ in range(levels):
        padded = F.pad(current, (pad, pad, pad, pad), mode="replicate")
        filtered = F.conv2d(padded, weight, groups=channels)
        pyramid.append(current - filtered)
        current = F.avg_pool2d(filtered, 2, ceil_mode=True)
    pyramid.append(current)
    return pyramid


def laplacian_loss(
    pred: Tensor, target: Tensor, levels: int = 5, kernel: Tensor | None = None
) -> Tensor:
    """Sum over the ``levels + 1`` pyramid terms of the mean absolute difference.

    The pyramid is linear (convolution, replicate padding and average pooling all are), so the
    pyramid of ``pred - target`` equals the difference of the two pyramids; one pyramid is
    built instead of two.

    Args:
        pred: ``(B, C, H, W)`` prediction (alpha in [0, 1] for P3M-Net).
        target: same shape as ``pred``.
        levels: band-pass levels (5 in the reference).
        kernel: ``(1, 1, k, k)`` low-pass kernel; ``laplacian_kernel()`` when omitted.

    Returns:
        Scalar float32, >= 0.
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"laplacian_loss needs equal shapes, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if kernel is None:
        kernel = laplacian_kernel()
    with no_autocast(pred):
        diff = pred.float() - target.float()
        return sum(level.abs().mean() for level in laplacian_pyramid(diff, kernel.float(), levels))


def cross_entropy_loss(logits: Tensor, classes: Tensor) -> Tensor:
    """Pixel-averaged cross-entropy of 3-class logits.

    Args:
        logits: ``(B, 3, H, W)`` raw logits (0 background, 1 transition, 2 foreground).
        classes: ``(B, H, W)`` int64 from ``trimap_classes``.

    Returns:
        Scalar float32.
    """
    with no_autocast(logits):
        return F.cross_entropy(logits.float(), classes)


def transition_alpha_loss(pred: Tensor, alpha: Tensor, mask: Tensor) -> Tensor:
    """Alpha loss on the transition region: sum_T sqrt((pred - alpha)^2 + eps) / (|T| + 1).

    The ``+ 1`` is the reference's guard against an empty transition region (the loss is then
    0). The reference also adds ``sqrt(eps) = 1e-6`` for every pixel outside T (it masks the
    difference before the square root); that constant has no gradient and is left out.

    Args:
        pred: ``(B, 1, H, W)`` predicted alpha in [0, 1].
        alpha: ``(B, 1, H, W)`` ground truth in [0, 1].
        mask: ``(B, 1, H, W)`` transition mask in {0, 1} (``transition_mask``).

    Returns:
        Scalar float32, >= 0.
    """
    with no_autocast(pred):
        mask = mask.float()
        err = torch.sqrt((pred.float() - alpha.float()) ** 2 + _EPS)
        return (err * mask).sum() / (mask.sum() + 1.0)


def alpha_loss(pred: Tensor, alpha: Tensor) -> Tensor:
    """Whole-image alpha loss: mean of sqrt((pred - alpha)^2 + eps).

    Args:
        pred: ``(B, 1, H, W)`` predicted alpha in [0, 1].
        alpha: ``(B, 1, H, W)`` ground truth in [0, 1].

    Returns:
        Scalar float32, >= 0.
    """
    with no_autocast(pred):
        return torch.sqrt((pred.float() - alpha.float()) ** 2 + _EPS).mean()


def composition_loss(pred: Tensor, image: Tensor, fg: Tensor, bg: Tensor) -> Tensor:
    """Composition loss of ``pred * fg + (1 - pred) * bg`` against the image.

    Sum over the 3 channels of sqrt(diff^2 + eps), divided by the number of alpha pixels
    (``B * H * W``), i.e. 3x the per-element mean. All of ``image``, ``fg`` and ``bg`` are
    ImageNet-normalised, per the spec; the reference instead composited un-normalised 0..255
    F and B against the normalised image and divided by 255.

    Args:
        pred: ``(B, 1, H, W)`` predicted alpha in [0, 1].
        image: ``(B, 3, H, W)`` normalised image.
        fg: ``(B, 3, H, W)`` normalised foreground.
        bg: ``(B, 3, H, W)`` normalised background.

    Returns:
        Scalar float32, >= 0.
    """
    with no_autocast(pred):
        a = pred.float()
        comp = a * fg.float() + (1.0 - a) * bg.float()
        err = torch.sqrt((comp - image.float()) ** 2 + _EPS)
        return err.sum() / a.numel()
