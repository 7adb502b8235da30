"""Pieces shared by the journal P3M-Net encoders: the pooling stem, token merging, weight I/O."""

from __future__ import annotations

import torch
from torch import nn


class Mlp(nn.Module):
    """``fc1 -> GELU -> fc2`` on tokens (dropout 0 in the released configurations)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class StemPool(nn.Module):
    """Convolutional stem with two unpoolable 2x2 max-pools (stride 4 in all).

    ``proj1`` (3x3, ``in -> mid``) + ReLU, pool, ``proj2`` (``mid -> out``) + ReLU, pool,
    ``proj3`` (``out -> out``) [+ ReLU for Swin-T], tokens, LayerNorm ``norm``. Names as in the
    journal code's ``PatchEmbed`` of both encoders.

    Args:
        in_ch: input channels (3).
        mid: width of the stride-1 feature.
        out: width of the stride-2 feature and of the tokens.
        relu_last: a ReLU after ``proj3`` (Swin-T's stem has one, ViTAE-S's does not).
    """

    def __init__(self, in_ch: int, mid: int, out: int, relu_last: bool) -> None:
        super().__init__()
        self.proj1 = nn.Conv2d(in_ch, mid, 3, padding=1)
        self.proj2 = nn.Conv2d(mid, out, 3, padding=1)
        self.proj3 = nn.Conv2d(out, out, 3, padding=1)
        self.relu_last = relu_last
        self.norm = nn.LayerNorm(out)

    def forward(
        self, image: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[int, int], list[torch.Tensor], list[torch.Tensor]]:
        """``image``: ``(B, 3, H, W)`` -> tokens ``(B, H/4 * W/4, out)``, their map size,
        the two pool index maps and the two features (``(B, mid, H, W)``, ``(B, out, H/2, W/2)``)
        taken before their pools."""
        f1 = torch.relu(self.proj1(image))
        x, i1 = nn.functional.max_pool2d(f1, 2, 2, return_indices=True)
        f2 = torch.relu(self.proj2(x))
        x, i2 = nn.functional.max_pool2d(f2, 2, 2, return_indices=True)
        x = self.proj3(x)
        if self.relu_last:
            x = torch.relu(x)
        size = (x.shape[-2], x.shape[-1])
        return self.norm(x.flatten(2).transpose(1, 2)), size, [i1, i2], [f1, f2]


class TokenMerge(nn.Module):
    """Downsampling between stages: LayerNorm, 2x2 max-pool (indices kept), linear widening.

    The journal code's ``PatchMerging`` of both encoders (``norm``, ``linear`` without bias);
    it replaces the 2x2 concatenation of the original Swin so that the matting decoder can
    unpool. The LayerNorm'd map before pooling is the skip feature of this stride.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.linear = nn.Linear(in_dim, out_dim, bias=False)

    def forward(
        self, tokens: torch.Tensor, size: tuple[int, int]
    ) -> tuple[torch.Tensor, tuple[int, int], torch.Tensor, torch.Tensor]:
        """``tokens``: ``(B, h*w, in)`` of an ``(h, w)`` map -> tokens ``(B, h/2*w/2, out)``,
        ``(h/2, w/2)``, the pool indices and the skip feature ``(B, in, h, w)``."""
        b, _, c = tokens.shape
        feature = self.norm(tokens).transpose(1, 2).reshape(b, c, *size)
        x, index = nn.functional.max_pool2d(feature, 2, 2, return_indices=True)
        out_size = (x.shape[-2], x.shape[-1])
        return self.linear(x.flatten(2).transpose(1, 2)), out_size, index, feature


def _summarise(names: list[str]) -> str:
    shown = ", ".join(names[:10])
    return f"{shown}{' ...' if len(names) > 10 else ''} ({len(names)} in all)"


def match_problems(module: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Missing, unexpected and mis-shaped keys of ``state`` against ``module``'s state dict."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshaped = [
        f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_summarise(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_summarise(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped keys: {_summarise(misshaped)}")
    return problems
