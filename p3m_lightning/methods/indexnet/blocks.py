"""Building blocks of IndexNet Matting: MobileNetV2 inverted residuals, depthwise
many-to-one index blocks, the ASPP and the index-guided upsampling stage.

Submodule names and ``nn.Sequential`` indices follow the official ``hlmobilenetv2.py`` so
that the released ``indexnet_matting.pth.tar`` loads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ASPP", "IndexBlock", "IndexedUpsampling", "InvertedResidual", "conv_bn"]


def conv_bn(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    """``kernel x kernel`` conv (same padding, stride 1, no bias) -> BN -> ReLU6."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block at stride 1 (IndexNet downsamples with index pooling instead).

    As in the official code the input is zero-padded by 1 pixel *before* the block (its
    depthwise conv has no padding of its own), so with an expansion the padded border passes
    through the first 1x1 conv + BN + ReLU6 too.

    Args:
        cin: input channels.
        cout: output channels.
        expand_ratio: hidden width = ``round(cin * expand_ratio)``.
    """

    def __init__(self, cin: int, cout: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(cin * expand_ratio)
        self.use_res_connect = cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += [
                nn.Conv2d(cin, hidden, 1, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU6(inplace=True),
            ]
        layers += [
            nn.Conv2d(hidden, hidden, 3, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(F.pad(x, (1, 1, 1, 1)))
        return x + out if self.use_res_connect else out


class IndexBlock(nn.Module):
    """Depthwise many-to-one index block with context and nonlinearity (the released setting:
    ``indexnet='depthwise', index_mode='m2o', use_context=True, use_nonlinear=True``).

    Four branches (4x4 stride-2 conv -> BN -> ReLU6 -> 1x1 conv) each predict one position of
    every 2x2 cell; ``sigmoid`` gives the decoder index map, a softmax over the four positions
    of the sigmoids gives the encoder index map; both are pixel-shuffled back to ``(H, W)``.

    Args:
        channels: channels of the feature map the indices apply to.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        for i in range(1, 5):
            branch = nn.Sequential(
                nn.Conv2d(channels, channels, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU6(inplace=True),
                nn.Conv2d(channels, channels, 1, bias=False),
            )
            self.add_module(f"indexnet{i}", branch)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Predict index maps for ``x`` ``(B, C, H, W)`` (H, W even).

        Returns:
            ``(encoder_index, decoder_index)``, both ``(B, C, H, W)``; the encoder index sums to
            1 over each 2x2 cell, the decoder index is in (0, 1).
        """
        b, c, h, w = x.shape
        logits = torch.stack([getattr(self, f"indexnet{i}")(x) for i in range(1, 5)], dim=2)
        dec = torch.sigmoid(logits)
        enc = F.softmax(dec, dim=2)
        shape = (b, c * 4, h // 2, w // 2)
        return F.pixel_shuffle(enc.reshape(shape), 2), F.pixel_shuffle(dec.reshape(shape), 2)


class _ASPPBranch(nn.Module):
    """One ASPP branch: 1x1 conv, or a dilated depthwise-separable 3x3 conv; BN, ReLU6."""

    def __init__(self, cin: int, cout: int, dilation: int) -> None:
        super().__init__()
        if dilation == 1:
            self.atrous_conv = nn.Sequential(
                nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True)
            )
        else:
            self.atrous_conv = nn.Sequential(
                nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False),
                nn.BatchNorm2d(cin),
                nn.ReLU6(inplace=True),
                nn.Conv2d(cin, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU6(inplace=True),
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.atrous_conv(x)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling at output stride 32 (dilations 1, 2, 4, 8 + image
    pooling), fused by a 1x1 conv; dropout 0.5.

    Args:
        cin: input channels (320).
        cout: output channels (160).
        width: channels of each branch (256).
    """

    def __init__(self, cin: int = 320, cout: int = 160, width: int = 256) -> None:
        super().__init__()
        self.aspp1 = _ASPPBranch(cin, width, 1)
        self.aspp2 = _ASPPBranch(cin, width, 2)
        self.aspp3 = _ASPPBranch(cin, width, 4)
        self.aspp4 = _ASPPBranch(cin, width, 8)
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(cin, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU6(inplace=True),
        )
        self.bottleneck_conv = nn.Sequential(
            nn.Conv2d(width * 5, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True)
        )
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.interpolate(self.global_avg_pool(x), size=x.shape[2:], mode="nearest")
        branches = [self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x), pooled]
        return self.dropout(self.bottleneck_conv(torch.cat(branches, dim=1)))


class IndexedUpsampling(nn.Module):
    """Decoder stage: nearest x2 upsampling weighted by the decoder index map (when given),
    concatenation with the skip feature, then a 5x5 conv -> BN -> ReLU6.

    Args:
        cin: channels after concatenation.
        cout: output channels.
        kernel: conv size (5 in the released model).
    """

    def __init__(self, cin: int, cout: int, kernel: int = 5) -> None:
        super().__init__()
        self.dconv = conv_bn(cin, cout, kernel)

    def forward(self, x: Tensor, skip: Tensor, index: Tensor | None = None) -> Tensor:
        if index is not None:
            x = index * F.interpolate(x, size=skip.shape[2:], mode="nearest")
        return self.dconv(torch.cat([x, skip], dim=1))
