"""ImageNet normalisation, the input convention of every network in this project.

The constants live here once; the training data path uses an exact uint8 lookup table built from
them (``p3m_lightning.data.transforms.normalise_image``), inference and logging use the tensor
functions below.
"""

from __future__ import annotations

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _stats(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    return mean, std


def normalize(image: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] -> ImageNet-normalised."""
    mean, std = _stats(image)
    return (image - mean) / std


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Inverse of ``normalize``: ImageNet-normalised ``(B, 3, H, W)`` -> RGB in [0, 1]."""
    mean, std = _stats(image)
    return (image * std + mean).clamp(0.0, 1.0)


def to_rgb01(image: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised ``(B, 3, H, W)`` back to RGB in float32, not clamped (the losses
    that composite in [0, 1] units keep the exact inverse)."""
    mean, std = _stats(image.float())
    return image.float() * std + mean


def rgb8(image: torch.Tensor) -> np.ndarray:
    """The 8-bit RGB photo behind an ImageNet-normalised ``(1, 3, H, W)`` tensor.

    Official test scripts resize the 8-bit photo itself; the loaders normalise
    ``k / 255`` exactly, so rounding the inverse recovers ``k`` exactly.

    Returns:
        ``(H, W, 3)`` uint8, on the CPU.
    """
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(3, 1, 1)
    x = image[0].detach().to("cpu", torch.float64)
    rgb = torch.round((x * std + mean) * 255.0).clamp(0, 255).to(torch.uint8)
    return rgb.permute(1, 2, 0).contiguous().numpy()
