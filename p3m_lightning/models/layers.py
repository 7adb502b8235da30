"""Layers two methods share: DeepLab-v3's ASPP (AlphaGAN, HATT) and pix2pix's PatchGAN
discriminator (AlphaGAN's critic, the base of HATT's)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ASPP", "PatchDiscriminator", "conv_bn_relu"]


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, dilation: int = 1) -> nn.Sequential:
    """Conv (no bias, "same" padding) -> BatchNorm -> ReLU."""
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """DeepLab-v3 atrous spatial pyramid pooling at output stride 16: a 1x1 branch, 3x3
    branches at rates 6, 12, 18 and image pooling, fused by a 1x1 conv.

    Args:
        cin: input channels.
        width: channels of each branch and of the output.
    """

    def __init__(self, cin: int, width: int = 256) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_relu(cin, width, 1)] + [conv_bn_relu(cin, width, 3, r) for r in (6, 12, 18)]
        )
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, width, 1, bias=False), nn.ReLU(inplace=True)
        )
        self.project = conv_bn_relu(5 * width, width, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.image_pool(x).expand(-1, -1, *x.shape[2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class PatchDiscriminator(nn.Module):
    """The pix2pix 70x70 PatchGAN: 4x4 convs (stride 2, 2, 2, 1, 1) with 64, 128, 256, 512
    channels, BN from the second on, LeakyReLU 0.2, one logit per patch.

    Input: a composite (ImageNet-normalised RGB) and its trimap / 255, as in AlphaGAN.

    Args:
        width: channels of the first layer (64).
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.width = width
        layers: list[nn.Module] = [nn.Conv2d(4, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        cin = width
        for mult, stride in ((2, 2), (4, 2), (8, 1)):
            layers += [
                nn.Conv2d(cin, width * mult, 4, stride, 1, bias=False),
                nn.BatchNorm2d(width * mult),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            cin = width * mult
        layers.append(nn.Conv2d(cin, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, image: Tensor, trimap: Tensor) -> Tensor:
        """Patch logits ``(B, 1, H/8 - 2, W/8 - 2)`` for a ``(B, 3, H, W)`` composite."""
        return self.net(torch.cat([image, trimap.to(image.dtype) / 255.0], dim=1))
