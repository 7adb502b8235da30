"""Building blocks of P3M-Net: decoder stages and the three integration modules.

Module and attribute names follow the published checkpoint (``transform``, ``conv1``, ``bn1``,
``conv2``), so published weights load without renaming inside these blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv1x1(in_ch: int, out_ch: int) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False)


def conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    """3x3 convolution, padding 1, without bias."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False)


class Upsample2x(nn.Module):
    """Bilinear x2 upsampling (align_corners False), a parameter-free decoder layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def decoder_stage(widths: list[int], upsample: bool, head: int | None = None) -> nn.Sequential:
    """A decoder stage: ``conv3x3(+bias) -> BN -> ReLU`` per consecutive pair of ``widths``.

    Args:
        widths: channel widths, e.g. ``[512, 512, 512, 256]`` gives three blocks.
        upsample: append a bilinear x2 upsampling (semantic decoder stages).
        head: if given, append a plain ``conv3x3(+bias)`` to ``head`` channels (no BN/ReLU)
            before the upsampling, as the last semantic stage does.

    The layer order matches the published ``nn.Sequential`` indices (conv, BN, ReLU, ...).
    """
    layers: list[nn.Module] = []
    for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        ]
    if head is not None:
        layers.append(nn.Conv2d(widths[-1], head, 3, padding=1))
    if upsample:
        layers.append(Upsample2x())
    return nn.Sequential(*layers)


class TFI(nn.Module):
    """Tripartite-feature integration: semantic, matting-decoder and encoder features.

    One shared 1x1 ``transform`` (p -> p/2) is applied to all three inputs, as published.

    Args:
        planes: channels ``p`` of each of the three inputs and of the output.
    """

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.transform = conv1x1(planes, planes // 2)
        self.conv1 = conv3x3(planes // 2 * 3, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)

    def forward(
        self, semantic: torch.Tensor, matting: torch.Tensor, encoder: torch.Tensor
    ) -> torch.Tensor:
        """All inputs and the output: ``(B, p, h, w)``."""
        return self.merge(semantic, matting, self.transform(encoder))

    def merge(
        self, semantic: torch.Tensor, matting: torch.Tensor, encoder_feature: torch.Tensor
    ) -> torch.Tensor:
        """``forward`` with the encoder feature already transformed (``self.transform(encoder)``,
        ``(B, p/2, h, w)``): a caller can keep that half-width map instead of the encoder's."""
        x = torch.cat((self.transform(semantic), self.transform(matting), encoder_feature), dim=1)
        return self.relu(self.bn1(self.conv1(x)))


class SBFI(nn.Module):
    """Shallow bipartite-feature integration: matting-decoder feature + the full-size e0.

    Args:
        planes: channels ``p`` of the decoder feature (and of the output).
        stride: stride of the decoder feature relative to e0.
        e0_channels: channels of e0 (64 for ResNet-34-mp).
    """

    def __init__(self, planes: int, stride: int, e0_channels: int = 64) -> None:
        super().__init__()
        self.transform1 = conv1x1(planes, planes // 2)
        self.transform2 = conv1x1(e0_channels, planes // 2)
        # The published kernel is 2 whatever the stride: a sparse sampling of e0, not a pooling.
        self.maxpool = nn.MaxPool2d(2, stride=stride)
        self.conv1 = conv3x3(planes // 2 * 2, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, matting: torch.Tensor, e0: torch.Tensor) -> torch.Tensor:
        """``matting``: ``(B, p, H/s, W/s)``; ``e0``: ``(B, c0, H, W)``; output like ``matting``."""
        return self.merge(matting, self.e0_feature(e0))

    def e0_feature(self, e0: torch.Tensor) -> torch.Tensor:
        """What this block takes of e0: its 2x2 samples every ``stride`` pixels, transformed,
        ``(B, p/2, H/s, W/s)``."""
        return self.transform2(self.maxpool(e0))

    def merge(self, matting: torch.Tensor, e0_feature: torch.Tensor) -> torch.Tensor:
        """``forward`` with ``e0_feature(e0)`` computed beforehand: a caller that takes it
        early can free e0, the largest map of the network."""
        x = torch.cat((self.transform1(matting), e0_feature), dim=1)
        return self.relu(self.bn1(self.conv1(x))) + matting


class DBFI(nn.Module):
    """Deep bipartite-feature integration: semantic feature + the deepest e4, with a side head.

    Args:
        planes: channels ``p`` of the semantic feature.
        stride: upsampling factor from e4 to the semantic feature.
        e4_channels: channels of e4 (512 for ResNet-34-mp).
        e4_stride: stride of e4 relative to the input (32); the side head is upsampled by
            ``e4_stride / stride`` to full size.
    """

    def __init__(self, planes: int, stride: int, e4_channels: int = 512, e4_stride: int = 32):
        super().__init__()
        self.stride = stride
        self.side_scale = e4_stride // stride
        self.transform1 = conv1x1(planes, planes // 2)
        self.transform2 = conv1x1(e4_channels, planes // 2)
        self.conv1 = conv3x3(planes // 2 * 2, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, 3)

    def forward(
        self, semantic: torch.Tensor, e4: torch.Tensor, side: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the refined semantic feature (like ``semantic``) and ``(B, 3, H, W)`` logits.

        With ``side=False`` the side head is skipped and ``None`` is returned in its place.
        """
        e4_up = F.interpolate(
            self.transform2(e4),
            scale_factor=float(self.stride),
            mode="bilinear",
            align_corners=False,
        )
        x = torch.cat((self.transform1(semantic), e4_up), dim=1)
        out = self.relu(self.bn1(self.conv1(x))) + semantic
        if not side:
            return out, None
        logits = F.interpolate(
            self.conv2(out),
            scale_factor=float(self.side_scale),
            mode="bilinear",
            align_corners=False,
        )
        return out, logits
