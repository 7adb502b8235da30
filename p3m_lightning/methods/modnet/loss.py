"""The MODNet training objective (after the reference ``src/trainer.py``,
``supervised_training_iter``).

``loss = 10 L_semantic + 10 L_detail + 1 L_matte`` with, writing ``t`` for the trimap as
0 / 0.5 / 1 and ``K`` for its known region (``t != 0.5``):

- ``L_semantic``: mean squared error between the 1/16 semantic map and the ground-truth alpha
  downsampled by 16 (bilinear) and blurred by a 3x3 Gaussian (sigma 0.8, reflection padding).
- ``L_detail``: mean absolute error between ``where(K, t, detail)`` and ``where(K, t, alpha)``
  over all pixels, i.e. the detail map is supervised in the transition region only.
- ``L_matte``: ``l1(matte, alpha) + 4 l1(where(K, t, matte), alpha)`` plus the same two terms
  on ``image * matte`` vs ``image * alpha`` (a "compositional" term on the image normalised as
  MODNet's input, mean 0.5 / std 0.5).

The self-supervised SOC adaptation is not part of this loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m_lightning.losses.terms import trimap_classes
from p3m_lightning.normalization import denormalize

__all__ = ["MODNetLoss", "modnet_blur_kernel"]

_BATCH_KEYS = ("image", "alpha", "trimap")
_OUTPUT_KEYS = ("alpha", "semantic", "detail")


def modnet_blur_kernel(size: int = 3) -> Tensor:
    """The reference's Gaussian blur kernel for the semantic target.

    The reference filters a ``size x size`` delta with ``scipy.ndimage.gaussian_filter``
    (sigma ``0.3 ((size - 1) / 2 - 1) + 0.8``, OpenCV's rule; taps out to ``int(4 sigma + 0.5)``;
    boundary mode "reflect"), so the Gaussian's tails beyond the small window fold back into it.
    The same folding is done here in closed form.

    Args:
        size: odd kernel side (3 in the reference).

    Returns:
        ``(1, 1, size, size)`` float32, separable, summing to 1.
    """
    if size % 2 != 1:
        raise ValueError(f"blur kernel size must be odd, got {size}")
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    radius = int(4.0 * sigma + 0.5)
    taps = [math.exp(-0.5 * (t / sigma) ** 2) for t in range(-radius, radius + 1)]
    total = sum(taps)
    centre = size // 2

    def reflect(p: int) -> int:  # half-sample symmetric: d c b a | a b c d | d c b a
        p %= 2 * size
        return 2 * size - 1 - p if p >= size else p

    k1 = torch.zeros(size, dtype=torch.float64)
    for i in range(size):
        for t, weight in zip(range(-radius, radius + 1), taps, strict=True):
            if reflect(i + t) == centre:
                k1[i] += weight / total
    return torch.outer(k1, k1).float().view(1, 1, size, size)


class MODNetLoss(nn.Module):
    """MODNet's supervised objective (scales 10 / 10 / 1 as in the reference).

    Args:
        semantic_scale: weight of ``L_semantic``.
        detail_scale: weight of ``L_detail``.
        matte_scale: weight of ``L_matte``.
        blur_size: side of the Gaussian blur applied to the semantic target.
    """

    def __init__(
        self,
        semantic_scale: float = 10.0,
        detail_scale: float = 10.0,
        matte_scale: float = 1.0,
        blur_size: int = 3,
    ) -> None:
        super().__init__()
        self.semantic_scale = semantic_scale
        self.detail_scale = detail_scale
        self.matte_scale = matte_scale
        self.blur_size = blur_size

    def semantic_target(self, alpha: Tensor, size: tuple[int, int]) -> Tensor:
        """Alpha ``(B, 1, H, W)`` bilinearly downsampled to ``size`` and Gaussian-blurred."""
        small = F.interpolate(alpha, size=size, mode="bilinear", align_corners=False)
        kernel = modnet_blur_kernel(self.blur_size).to(small.device)
        pad = self.blur_size // 2
        return F.conv2d(F.pad(small, (pad, pad, pad, pad), mode="reflect"), kernel)

    def forward(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """Compute every term for one batch.

        Args:
            outputs: ``alpha`` and ``detail`` ``(B, 1, H, W)``, ``semantic``
                ``(B, 1, H/16, W/16)``, all in [0, 1].
            batch: ``image`` ``(B, 3, H, W)`` ImageNet-normalised, ``alpha`` ``(B, 1, H, W)``
                in [0, 1], ``trimap`` ``(B, 1, H, W)`` in [0, 255].

        Returns:
            Scalar float32 tensors: ``loss`` (weighted total), the unweighted
            ``loss_semantic``, ``loss_detail``, ``loss_matte`` and the parts of the latter,
            ``loss_matte_l1`` and ``loss_matte_comp``.
        """
        missing = [k for k in _BATCH_KEYS if k not in batch]
        missing += [f"outputs.{k}" for k in _OUTPUT_KEYS if k not in outputs]
        if missing:
            raise KeyError(
                f"MODNetLoss needs batch keys {list(_BATCH_KEYS)} and outputs "
                f"{list(_OUTPUT_KEYS)}; missing {missing}."
            )
        with torch.autocast(device_type=batch["alpha"].device.type, enabled=False):
            alpha = batch["alpha"].float()
            trimap = trimap_classes(batch["trimap"]).unsqueeze(1).float() / 2.0
            known = trimap != 0.5
            semantic = outputs["semantic"].float()
            detail = outputs["detail"].float()
            matte = outputs["alpha"].float()
            # MODNet's own input normalisation, [-1, 1].
            image = denormalize(batch["image"].float()) * 2.0 - 1.0

            gt_semantic = self.semantic_target(alpha, tuple(semantic.shape[-2:]))
            terms = {"loss_semantic": F.mse_loss(semantic, gt_semantic)}
            terms["loss_detail"] = F.l1_loss(
                torch.where(known, trimap, detail), torch.where(known, trimap, alpha)
            )
            boundary_matte = torch.where(known, trimap, matte)
            terms["loss_matte_l1"] = F.l1_loss(matte, alpha) + 4.0 * F.l1_loss(
                boundary_matte, alpha
            )
            terms["loss_matte_comp"] = F.l1_loss(image * matte, image * alpha) + 4.0 * F.l1_loss(
                image * boundary_matte, image * alpha
            )
            terms["loss_matte"] = terms["loss_matte_l1"] + terms["loss_matte_comp"]
            terms["loss"] = (
                self.semantic_scale * terms["loss_semantic"]
                + self.detail_scale * terms["loss_detail"]
                + self.matte_scale * terms["loss_matte"]
            )
        return terms

    def extra_repr(self) -> str:
        return (
            f"semantic_scale={self.semantic_scale}, detail_scale={self.detail_scale}, "
            f"matte_scale={self.matte_scale}, blur_size={self.blur_size}"
        )
