"""HAttMatting (Qiao et al., CVPR 2020): hierarchical attention matting from a single image.

A ResNeXt encoder gives low-level appearance cues (its first stage, stride 4) and, through
ASPP, high-level pyramidal features (stride 16). Pyramidal feature distillation re-weights the
pyramidal features channel-wise (squeeze-and-excitation style attention); appearance cues
filtration turns the distilled features into a spatial attention map (two separable large-kernel
paths) that keeps only the appearance cues near the foreground's structure. Both are
concatenated and decoded to a sigmoid alpha.

The authors' repository (wukaoliu/CVPR2020-HAttMatting) never released the network or a
checkpoint, only the dataset tools; this follows the paper. Module names are ours except the
encoder's, which are torchvision's ResNet names so that a local ImageNet ResNeXt state dict
loads. ``AlphaDiscriminator`` is the optional adversarial critic of the paper's hybrid loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck, ResNet

from p3m_lightning.models.contract import check_divisible
from p3m_lightning.models.encoders import load_imagenet_weights
from p3m_lightning.models.layers import ASPP, PatchDiscriminator

__all__ = ["AlphaDiscriminator", "HATTNet"]


def _conv_bn_relu(c_in: int, c_out: int, kernel: int | tuple[int, int] = 3) -> nn.Sequential:
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, padding=(k[0] // 2, k[1] // 2), bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ChannelAttention(nn.Module):
    """Pyramidal feature distillation: ``x * sigmoid(W2 relu(W1 avgpool(x)))`` per channel.

    Args:
        channels: channels of ``x``.
        reduction: bottleneck ratio of the two 1x1 layers.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, h, w)`` -> the same, each channel scaled by its weight in (0, 1)."""
        return x * torch.sigmoid(self.fc(x))


class SpatialAttention(nn.Module):
    """Appearance cues filtration's attention map from the distilled high-level features.

    Two paths see a ``k x k`` neighbourhood at the cost of two thin kernels each (``1 x k`` then
    ``k x 1``, and ``k x 1`` then ``1 x k``); their sum through a sigmoid is the map.

    Args:
        channels: channels of the high-level features.
        kernel: the long side ``k`` of the separable kernels.
    """

    def __init__(self, channels: int, kernel: int = 7) -> None:
        super().__init__()
        hidden = max(1, channels // 2)
        pad = kernel // 2
        self.row_first = nn.Sequential(
            _conv_bn_relu(channels, hidden, (1, kernel)),
            nn.Conv2d(hidden, 1, (kernel, 1), padding=(pad, 0)),
        )
        self.col_first = nn.Sequential(
            _conv_bn_relu(channels, hidden, (kernel, 1)),
            nn.Conv2d(hidden, 1, (1, kernel), padding=(0, pad)),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, h, w)`` -> ``(B, 1, h, w)`` attention in (0, 1)."""
        return torch.sigmoid(self.row_first(x) + self.col_first(x))


class HATTNet(nn.Module):
    """HAttMatting: ResNeXt + ASPP, channel attention, spatial attention, alpha decoder.

    Args:
        layers: Bottleneck blocks per ResNeXt stage ((3, 4, 23, 3) = ResNeXt-101).
        groups: ResNeXt cardinality (32).
        width_per_group: channels per group in the first stage (8, i.e. ``32x8d``).
        aspp_width: channels of the ASPP branches and of the pyramidal features (256).
        low_width: channels of the projected appearance cues (64).
        decoder_width: channels of the aggregation convolutions (64).
        attention_kernel: long side of the spatial attention's separable kernels (7).
        pretrained_path: optional local torchvision ResNeXt ImageNet state dict of the same
            shape (e.g. ``resnext101_32x8d``) loaded into the encoder; nothing is downloaded.
    """

    inputs: ClassVar[tuple[str, ...]] = ("image",)
    input_divisor: ClassVar[int] = 16

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 23, 3),
        groups: int = 32,
        width_per_group: int = 8,
        aspp_width: int = 256,
        low_width: int = 64,
        decoder_width: int = 64,
        attention_kernel: int = 7,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"HATTNet: layers needs 4 stage depths, got {list(layers)}")
        self.layers = tuple(layers)
        self.groups = groups
        self.width_per_group = width_per_group
        self.aspp_width = aspp_width
        self.low_width = low_width
        self.decoder_width = decoder_width
        self.attention_kernel = attention_kernel

        # Output stride 16 (last stage dilated), the stride ASPP's rates 6/12/18 are meant for.
        self.encoder = ResNet(
            Bottleneck,
            list(self.layers),
            groups=groups,
            width_per_group=width_per_group,
            replace_stride_with_dilation=[False, False, True],
        )
        del self.encoder.fc
        if pretrained_path is not None:
            self.encoder.backbone_weights = load_imagenet_weights(self.encoder, pretrained_path)
        low_in = self.encoder.layer1[-1].conv3.out_channels
        high_in = self.encoder.layer4[-1].conv3.out_channels

        self.aspp = ASPP(high_in, aspp_width)
        self.distill = ChannelAttention(aspp_width)
        self.appearance = _conv_bn_relu(low_in, low_width)
        self.spatial_attention = SpatialAttention(aspp_width, attention_kernel)
        self.aggregate = nn.Sequential(
            _conv_bn_relu(aspp_width + low_width, decoder_width),
            _conv_bn_relu(decoder_width, decoder_width),
        )
        self.predict = nn.Conv2d(decoder_width, 1, 3, padding=1)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """Predict alpha.

        Args:
            image: ``(B, 3, H, W)`` ImageNet-normalised RGB, ``H`` and ``W`` multiples of 16.

        Returns:
            ``alpha``: ``(B, 1, H, W)`` in [0, 1].
        """
        h, w = image.shape[-2:]
        check_divisible(self, image)
        e = self.encoder
        low = e.layer1(e.maxpool(e.relu(e.bn1(e.conv1(image)))))
        high = self.aspp(e.layer4(e.layer3(e.layer2(low))))
        high = self.distill(high)
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        cues = self.appearance(low) * self.spatial_attention(high)
        x = self.aggregate(torch.cat([high, cues], dim=1))
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        return {"alpha": torch.sigmoid(self.predict(x))}

    def arch_config(self) -> dict[str, Any]:
        """Plain values that rebuild this architecture: ``HATTNet(**arch_config())``."""
        return {
            "layers": list(self.layers),
            "groups": self.groups,
            "width_per_group": self.width_per_group,
            "aspp_width": self.aspp_width,
            "low_width": self.low_width,
            "decoder_width": self.decoder_width,
            "attention_kernel": self.attention_kernel,
        }


class AlphaDiscriminator(PatchDiscriminator):
    """The pix2pix PatchGAN of ``models.alphagan``, conditioned on the image: it judges an
    ``(image, alpha)`` pair, real for the ground-truth matte, fake for the prediction.

    Args:
        width: channels of the first layer (64).
    """

    def forward(self, image: Tensor, alpha: Tensor) -> Tensor:  # type: ignore[override]
        """``image`` ``(B, 3, H, W)`` normalised, ``alpha`` ``(B, 1, H, W)`` in [0, 1] ->
        patch logits ``(B, 1, H/8 - 2, W/8 - 2)``."""
        return self.net(torch.cat([image, alpha.to(image.dtype)], dim=1))
