"""The ViTAE-S encoder of the journal P3M-Net, in plain PyTorch.

This is the ViTAE variant the journal code builds for matting (its ``ViTAE_noRC_MaxPooling``):
four stages of normal cells (NC), each cell a multi-head self-attention branch and a parallel
convolution module (PCM) whose outputs are added to the tokens, then an MLP. There are no
pyramid reduction cells (PRM): stage 1 starts with a convolutional stem that keeps max-pool
indices (``RC`` of ``layers.0``), stages 2-4 with a LayerNorm + 2x2 max-pool + linear
"patch merging" (``RC`` of ``layers.1-3``), so every downsampling is an unpoolable max-pool, as
in the ResNet-34-mp of the conference P3M-Net.

Module names equal the journal code's (``layers.{i}.RC``, ``layers.{i}.NC.{j}``, ``PCM``,
``head``), so its ImageNet weights (``state_dict_ema`` of the released ViTAE-S file) and the
``encoder.`` part of the published P3M-Net(ViTAE-S) checkpoint load without renaming.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from p3m_lightning.methods.p3m_journal.common import Mlp, StemPool, TokenMerge
from p3m_lightning.models.encoders import load_backbone, read_backbone_state

# The released ViTAE-S of the journal code ("ViTAE_noRC_MaxPooling_bias_basic_stages4_14").
VITAE_S: dict[str, Any] = {
    "token_dims": [64, 128, 256, 512],
    "depths": [2, 2, 12, 2],
    "heads": [1, 2, 4, 8],
    "groups": [1, 32, 64, 128],
    "mlp_ratio": 4.0,
    "drop_path_rate": 0.0,
}
# Seed of the performer's random features (see ``PerformerAttention``).
PERFORMER_SEED = 0


class Attention(nn.Module):
    """Multi-head softmax self-attention over all tokens (``qkv`` with bias, ``proj``)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, N, C)`` -> ``(B, N, C)``."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # scale head_dim ** -0.5, as published
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class PerformerAttention(nn.Module):
    """Performer attention (positive orthogonal random features), used in the first stage.

    Softmax attention is approximated with ``m = head_dim / 2`` random features
    ``phi(x) = exp(w x - |x|^2 / 2) / sqrt(m)``; the output is
    ``phi(q) (phi(k)^T v) / (phi(q) sum_t phi(k_t) + 1e-8)``, computed in float32. The input
    projection is named ``kqv`` and yields k, q, v in that order, as published.

    The journal code draws ``w`` from the global random generator at construction and keeps it
    as a plain attribute: it is in no checkpoint, so the published weights were trained and
    tested with features nobody can recover. Here ``w`` is drawn the same way (orthogonal rows
    scaled by sqrt(m)) from a generator with a fixed seed, and kept as a non-persistent buffer:
    every model built here has the same features, and checkpoints keep the published names.
    ``norm1`` exists, unused, in the published module (and checkpoint); it is kept frozen.
    """

    def __init__(self, dim: int, heads: int, kernel_ratio: float = 0.5) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.m = int(self.head_dim * kernel_ratio)
        self.kqv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6).requires_grad_(False)
        gen = torch.Generator().manual_seed(PERFORMER_SEED)
        w = torch.randn(heads, self.m, self.head_dim, generator=gen)
        for h in range(heads):
            w[h] = nn.init.orthogonal_(w[h], generator=gen) * math.sqrt(self.m)
        self.register_buffer("w", w, persistent=False)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, h, T, d)`` -> ``(B, h, T, m)`` positive random features."""
        half_sq_norm = (x * x).sum(dim=-1, keepdim=True) / 2
        wtx = torch.einsum("bhti,hmi->bhtm", x, self.w)
        return torch.exp(wtx - half_sq_norm) / math.sqrt(self.m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, N, C)`` -> ``(B, N, C)``."""
        b, n, c = x.shape
        kqv = self.kqv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        with torch.autocast(x.device.type, enabled=False):
            k, q, v = (t.float() for t in kqv)
            kp, qp = self._features(k), self._features(q)
            denom = torch.einsum("bhti,bhi->bht", qp, kp.sum(dim=2)).unsqueeze(-1)
            kptv = torch.einsum("bhin,bhim->bhnm", v, kp)
            y = torch.einsum("bhti,bhni->bhtn", qp, kptv) / (denom + 1e-8)
        y = y.to(x.dtype).permute(0, 2, 1, 3).reshape(b, n, c)
        return self.proj(y)


class NormalCell(nn.Module):
    """ViTAE normal cell: tokens + attention + PCM, then + MLP.

    ``PCM`` is three grouped 3x3 convolutions (``dim -> mlp_ratio*dim -> dim -> dim``, BN after
    the first two, SiLU after each) on the tokens laid out as a map. Both branches read the
    same input tokens: ``x + attn(norm1(x)) + PCM(x)``, then ``+ mlp(norm2(.))``.

    Args:
        dim: token width.
        heads: attention heads.
        groups: groups of the PCM convolutions.
        mlp_ratio: MLP and PCM expansion.
        performer: Performer attention (first stage) instead of softmax attention.
        drop_path: stochastic-depth rate of the three residual branches.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        groups: int,
        mlp_ratio: float = 4.0,
        performer: bool = False,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = PerformerAttention(dim, heads) if performer else Attention(dim, heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden)
        self.PCM = nn.Sequential(
            nn.Conv2d(dim, hidden, 3, 1, 1, 1, groups),
            nn.BatchNorm2d(hidden),
            nn.SiLU(inplace=True),
            nn.Conv2d(hidden, dim, 3, 1, 1, 1, groups),
            nn.BatchNorm2d(dim),
            nn.SiLU(inplace=True),
            nn.Conv2d(dim, dim, 3, 1, 1, 1, groups),
            nn.SiLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``x``: ``(B, h*w, C)`` tokens of an ``(h, w) = size`` map -> the same shape."""
        b, n, c = x.shape
        grid = x.transpose(1, 2).reshape(b, c, *size)
        conv = self.drop_path(self.PCM(grid).flatten(2).transpose(1, 2))
        x = x + self.drop_path(self.attn(self.norm1(x))) + conv
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ViTAEStage(nn.Module):
    """One stage: its downsampling ``RC`` (stem or token merge), then ``NC`` normal cells."""

    def __init__(self, rc: nn.Module, cells: list[NormalCell]) -> None:
        super().__init__()
        self.RC = rc
        self.NC = nn.ModuleList(cells)


class ViTAEEncoder(nn.Module):
    """ViTAE-S as the journal P3M-Net uses it: features at six strides and five pool indices.

    Follows this project's encoder interface (``p3m_lightning.models.encoders``):
    ``forward(image) -> (features, indices)`` with ``features`` at strides 1, 2, 4, 8, 16, 32
    (widths ``out_channels``) and the max-pool indices of levels 0-4.

    - stride 1: the stem's first ReLU'd conv (``token_dims[0] / 2`` channels);
    - stride 2: the stem's second ReLU'd conv (``token_dims[0]``);
    - strides 4, 8, 16: the LayerNorm'd tokens of stages 1, 2, 3, as maps (taken inside the
      next stage's merge, before its pooling);
    - stride 32: the last stage's tokens as a map (no final norm).

    The ImageNet classifier ``head`` is kept, frozen and unused, because the published
    checkpoints carry it.

    Args:
        token_dims: token width of each of the four stages.
        depths: normal cells per stage.
        heads: attention heads per stage.
        groups: PCM convolution groups per stage.
        mlp_ratio: MLP/PCM expansion.
        drop_path_rate: stochastic depth (0 in the released configuration).
        num_classes: width of the frozen ImageNet head.
    """

    def __init__(
        self,
        token_dims: list[int] = VITAE_S["token_dims"],
        depths: list[int] = VITAE_S["depths"],
        heads: list[int] = VITAE_S["heads"],
        groups: list[int] = VITAE_S["groups"],
        mlp_ratio: float = VITAE_S["mlp_ratio"],
        drop_path_rate: float = VITAE_S["drop_path_rate"],
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.config = {
            "token_dims": list(token_dims),
            "depths": list(depths),
            "heads": list(heads),
            "groups": list(groups),
            "mlp_ratio": float(mlp_ratio),
            "drop_path_rate": float(drop_path_rate),
            "num_classes": int(num_classes),
        }
        d = token_dims
        self.out_channels = (d[0] // 2, d[0], d[0], d[1], d[2], d[3])
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        stages = []
        for i in range(4):
            # The journal code slices the decay rule at depths[i-1] instead of the running
            # total; kept, it changes only training with drop_path_rate > 0.
            start = 0 if i == 0 else depths[i - 1]
            rc: nn.Module = (
                StemPool(3, d[0] // 2, d[0], relu_last=False)
                if i == 0
                else TokenMerge(d[i - 1], d[i])
            )
            cells = [
                NormalCell(d[i], heads[i], groups[i], mlp_ratio, i == 0, rates[start + j])
                for j in range(depths[i])
            ]
            stages.append(ViTAEStage(rc, cells))
        self.layers = nn.ModuleList(stages)
        self.head = nn.Linear(d[3], num_classes).requires_grad_(False)
        self.apply(_init_weights)

    def forward(self, image: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``image``: ``(B, 3, H, W)``, H and W multiples of 32.

        Returns:
            ``(features, indices)``: six ``(B, c, H/s, W/s)`` maps for s = 1..32 and five
            max-pool index maps (levels 0-4).
        """
        tokens, size, indices, features = self.layers[0].RC(image)
        for cell in self.layers[0].NC:
            tokens = cell(tokens, size)
        for stage in self.layers[1:]:
            tokens, size, index, feature = stage.RC(tokens, size)
            indices.append(index)
            features.append(feature)
            for cell in stage.NC:
                tokens = cell(tokens, size)
        b, _, c = tokens.shape
        features.append(tokens.transpose(1, 2).reshape(b, c, *size))
        return features, indices

    def arch_config(self) -> dict[str, Any]:
        """Plain values that rebuild this encoder (``ViTAEEncoder(**arch_config())``)."""
        return dict(self.config)

    def load_imagenet(self, path: str) -> None:
        """Load the released ViTAE-S ImageNet weights (``state_dict_ema`` of the file); keys
        this encoder does not have (the classifier head) are ignored.

        Raises:
            CheckpointError: naming the encoder's missing or mis-shaped tensors.
        """
        state = read_backbone_state(path, keys=("state_dict_ema", "state_dict", "model"))
        self.backbone_weights = load_backbone(
            self, state, path, "the released ViTAE-S ImageNet weights (state_dict_ema)"
        )


def _init_weights(m: nn.Module) -> None:
    """The journal code's init: truncated-normal linears (std 0.02), unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
