"""The Swin-T encoder of the journal P3M-Net ("swin_stem_pooling5"), in plain PyTorch.

The Swin-T blocks are the original ones (window 7, shifted windows on odd blocks, relative
position bias), but the journal code replaces Swin's 4x4 patch embedding with a convolutional
stem that downsamples by two unpoolable max-pools, and each 2x2 patch merging with LayerNorm +
max-pool + linear, so that the matting decoder can unpool at every stride (five pools in all).
Windows that do not tile a stage are zero-padded at the bottom/right and masked.

timm's ``SwinTransformer`` is not used: its patch embedding and merging are the original ones,
so the released "SWIN-T" ImageNet weights of this variant (``patch_embed.proj1-3``,
``layers.{i}.downsample.linear``) have no counterpart in it. Module names here are the journal
code's (which keeps Microsoft's names for the blocks), so those weights and P3M-Net(Swin-T)
checkpoints load without renaming.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from p3m_lightning.methods.p3m_journal.common import (
    Mlp,
    StemPool,
    TokenMerge,
)
from p3m_lightning.models.encoders import load_backbone, read_backbone_state

SWIN_T: dict[str, Any] = {
    "embed_dim": 96,
    "depths": [2, 2, 6, 2],
    "heads": [3, 6, 12, 24],
    "window_size": 7,
    "mlp_ratio": 4.0,
    "drop_path_rate": 0.2,
}


def relative_position_index(window: int) -> torch.Tensor:
    """``(w*w, w*w)`` index into the ``(2w-1)^2`` bias table for each query/key pair."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    flat = coords.flatten(1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def _region_labels(size: int, padded: int, shift: int, device: torch.device) -> torch.Tensor:
    """Label of each row (or column) of the padded, cyclically shifted map.

    Rows that came around from the other edge (the last ``shift``) and padding rows get labels
    of their own, so that a window attends only within one contiguous region of the padded
    image. For stages of at least a window this gives the journal code's regions exactly.
    """
    i = torch.arange(padded, device=device)
    source = (i + shift) % padded  # row of the padded map before the shift
    wrapped = (i >= padded - shift).long()
    return wrapped * 2 + (source >= size).long()


def window_attention_mask(
    size: tuple[int, int], window: int, shift: int, device: torch.device
) -> torch.Tensor | None:
    """Additive ``(nW, w*w, w*w)`` mask (0 / -100) of a stage of ``size``, or None if unneeded.

    None when no window is shifted and the map tiles into windows, as in the journal code.
    """
    h, w = size
    hp, wp = -(-h // window) * window, -(-w // window) * window
    if shift == 0 and (hp, wp) == (h, w):
        return None
    rows = _region_labels(h, hp, shift, device)
    cols = _region_labels(w, wp, shift, device)
    labels = (rows[:, None] * 4 + cols[None, :]).float()
    labels = labels.reshape(hp // window, window, wp // window, window).transpose(1, 2)
    labels = labels.reshape(-1, window * window)
    differ = labels[:, None, :] != labels[:, :, None]
    return torch.zeros(differ.shape, device=device).masked_fill(differ, -100.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias."""

    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        self.window = window
        self.heads = heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x``: ``(nW*B, w*w, C)`` windows; ``mask``: ``(nW, w*w, w*w)`` or None."""
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        bias = bias.reshape(n, n, -1).permute(2, 0, 1)  # (heads, n, n)
        if mask is None:
            extra = bias.unsqueeze(0).to(q.dtype)
        else:
            nw = mask.shape[0]
            extra = (bias.unsqueeze(0) + mask.unsqueeze(1)).to(q.dtype)  # (nW, heads, n, n)
            extra = extra.unsqueeze(0).expand(bw // nw, -1, -1, -1, -1).reshape(bw, -1, n, n)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=extra)
        return self.proj(y.transpose(1, 2).reshape(bw, n, c))


class SwinBlock(nn.Module):
    """Swin block: (shifted) window attention and MLP, pre-norm, residual.

    The journal code stores the attention masks of its 512x512 training size as buffers (so
    they appear in its state dicts as ``attn_mask``); here masks are built for each input size
    at run time, and ``attn_mask`` entries of a checkpoint are ignored on load.
    """

    def __init__(
        self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float, drop_path: float
    ) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        state_dict.pop(prefix + "attn_mask", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``x``: ``(B, h*w, C)`` tokens of an ``(h, w) = size`` map -> the same shape."""
        h, w = size
        b, _, c = x.shape
        win = self.window
        y = self.norm1(x).reshape(b, h, w, c)
        pad_h, pad_w = (-h) % win, (-w) % win
        y = F.pad(y, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = y.reshape(b, hp // win, win, wp // win, win, c).transpose(2, 3)
        windows = windows.reshape(-1, win * win, c)
        mask = window_attention_mask((h, w), win, self.shift, x.device)
        y = self.attn(windows, mask)
        y = y.reshape(b, hp // win, wp // win, win, win, c).transpose(2, 3).reshape(b, hp, wp, c)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        y = y[:, :h, :w].reshape(b, h * w, c)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinStage(nn.Module):
    """``blocks`` at one resolution, then (except the last stage) a ``downsample`` merge."""

    def __init__(self, blocks: list[SwinBlock], downsample: TokenMerge | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample


class SwinEncoder(nn.Module):
    """Swin-T as the journal P3M-Net uses it: features at six strides and five pool indices.

    Follows this project's encoder interface (``p3m_lightning.models.encoders``): features at
    strides 1 and 2 from the stem (``embed_dim / 2`` and ``embed_dim`` channels), at 4, 8, 16
    the LayerNorm'd maps inside the merges, at 32 the last stage after the final ``norm``.

    The window is fixed (7): the journal code builds its blocks for a 512x512 input, where
    every stage is larger than a window; it cannot run stages smaller than a window (inputs
    under 256 pixels). Here such stages are padded to one window and masked like any
    padding, so any multiple of 32 works; from 256 up the computation is the published one.

    Args:
        embed_dim: token width of the first stage (doubles at each merge).
        depths: blocks per stage.
        heads: attention heads per stage.
        window_size: attention window.
        mlp_ratio: MLP expansion.
        drop_path_rate: stochastic depth, linear over all blocks (0.2 in the journal code).
    """

    def __init__(
        self,
        embed_dim: int = SWIN_T["embed_dim"],
        depths: list[int] = SWIN_T["depths"],
        heads: list[int] = SWIN_T["heads"],
        window_size: int = SWIN_T["window_size"],
        mlp_ratio: float = SWIN_T["mlp_ratio"],
        drop_path_rate: float = SWIN_T["drop_path_rate"],
    ) -> None:
        super().__init__()
        self.config = {
            "embed_dim": int(embed_dim),
            "depths": list(depths),
            "heads": list(heads),
            "window_size": int(window_size),
            "mlp_ratio": float(mlp_ratio),
            "drop_path_rate": float(drop_path_rate),
        }
        dims = [embed_dim * 2**i for i in range(4)]
        self.out_channels = (embed_dim // 2, embed_dim, *dims[:3], dims[3])
        self.patch_embed = StemPool(3, embed_dim // 2, embed_dim, relu_last=True)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        stages = []
        for i in range(4):
            blocks = [
                SwinBlock(
                    dims[i],
                    heads[i],
                    window_size,
                    0 if j % 2 == 0 else window_size // 2,
                    mlp_ratio,
                    rates[sum(depths[:i]) + j],
                )
                for j in range(depths[i])
            ]
            stages.append(SwinStage(blocks, TokenMerge(dims[i], dims[i] * 2) if i < 3 else None))
        self.layers = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(dims[3])
        self.apply(_init_weights)

    def forward(self, image: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``image``: ``(B, 3, H, W)``, H and W multiples of 32.

        Returns:
            ``(features, indices)``: six ``(B, c, H/s, W/s)`` maps for s = 1..32 and five
            max-pool index maps (levels 0-4).
        """
        tokens, size, indices, features = self.patch_embed(image)
        for stage in self.layers:
            for block in stage.blocks:
                tokens = block(tokens, size)
            if stage.downsample is not None:
                tokens, size, index, feature = stage.downsample(tokens, size)
                indices.append(index)
                features.append(feature)
        tokens = self.norm(tokens)
        b, _, c = tokens.shape
        features.append(tokens.transpose(1, 2).reshape(b, c, *size))
        return features, indices

    def arch_config(self) -> dict[str, Any]:
        """Plain values that rebuild this encoder (``SwinEncoder(**arch_config())``)."""
        return dict(self.config)

    def load_imagenet(self, path: str) -> None:
        """Load the released Swin-T ImageNet weights of this variant.

        As the journal code (``strict=False``), keys this encoder does not have (a classifier
        head, ``attn_mask`` buffers) are ignored; unlike it, a missing or mis-shaped weight is
        an error, so a wrong file cannot leave the encoder half-initialised.

        Raises:
            CheckpointError: naming the missing or mis-shaped keys.
        """
        state = read_backbone_state(path, keys=("model", "state_dict", "state_dict_ema"))
        self.backbone_weights = load_backbone(
            self, state, path, "the released Swin-T ImageNet weights of this variant"
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
