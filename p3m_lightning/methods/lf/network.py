"""LF, A Late Fusion CNN for Digital Matting (Zhang et al., CVPR 2019).

A segmentation network (one DenseNet-201 encoder, two U-shaped decoders) classifies every pixel
twice: the foreground decoder predicts the foreground probability ``F`` and the background
decoder the background probability ``B``. A small fusion network looks at the image, both
probabilities and both decoders' last features and predicts a per-pixel blending weight
``beta``; the matte is the late fusion ``alpha = beta F + (1 - beta)(1 - B)``.

The authors' code and model were only distributed through a cloud-drive link, never in a
public repository; this network follows the paper. Module names are ours (no checkpoint to
match) except the encoder's, which are torchvision's DenseNet ``features`` names so that a local
ImageNet ``densenet201`` state dict loads.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import DenseNet

from p3m_lightning.models.contract import check_divisible
from p3m_lightning.models.encoders import load_backbone, read_backbone_state

__all__ = ["LFNet", "late_fusion"]

# torchvision's released DenseNet files still spell ``norm.1`` where the modules say ``norm1``.
_OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\..+)$")


def late_fusion(beta: Tensor, fg_prob: Tensor, bg_prob: Tensor) -> Tensor:
    """The paper's fusion ``alpha = beta F + (1 - beta)(1 - B)``.

    Args:
        beta: ``(B, 1, H, W)`` blending weight in [0, 1].
        fg_prob: ``(B, 1, H, W)`` foreground probability ``F`` in [0, 1].
        bg_prob: ``(B, 1, H, W)`` background probability ``B`` in [0, 1].

    Returns:
        ``(B, 1, H, W)`` alpha in [0, 1] (a convex combination of ``F`` and ``1 - B``).
    """
    return beta * fg_prob + (1.0 - beta) * (1.0 - bg_prob)


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _up2(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class _Decoder(nn.Module):
    """U-shaped decoder: from the stride-32 feature back to full resolution.

    Four stages each upsample 2x, concatenate the encoder feature of that stride (16, 8, 4, 2)
    and apply two 3x3 conv-BN-ReLU; a last stage upsamples to full size and applies one 3x3
    conv-BN-ReLU, whose output (``features``) also feeds the fusion network; a 1x1 conv gives the
    class logit.

    Args:
        skip_channels: channels of the encoder features at strides 2, 4, 8, 16, 32.
        widths: output channels of the stages at strides 16, 8, 4, 2 and 1.
    """

    def __init__(self, skip_channels: Sequence[int], widths: Sequence[int]) -> None:
        super().__init__()
        c_in = skip_channels[4]
        stages = []
        for skip, width in zip(reversed(skip_channels[:4]), widths[:4], strict=True):
            stages.append(
                nn.Sequential(_conv_bn_relu(c_in + skip, width), _conv_bn_relu(width, width))
            )
            c_in = width
        self.stages = nn.ModuleList(stages)
        self.full = _conv_bn_relu(c_in, widths[4])
        self.classifier = nn.Conv2d(widths[4], 1, 1)

    def forward(self, skips: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """``skips``: encoder features at strides 2..32 -> (logit, features) at full size."""
        x = skips[4]
        for stage, skip in zip(self.stages, reversed(skips[:4]), strict=True):
            x = stage(torch.cat([_up2(x), skip], dim=1))
        features = self.full(_up2(x))
        return self.classifier(features), features


class LFNet(nn.Module):
    """LF: DenseNet-201 encoder, foreground and background decoders, fusion network.

    Args:
        growth_rate: DenseNet growth rate (32 for DenseNet-201).
        block_config: layers of the four dense blocks ((6, 12, 48, 32) for DenseNet-201).
        num_init_features: channels of the DenseNet stem (64).
        decoder_widths: channels of each decoder's stages at strides 16, 8, 4, 2, 1.
        fusion_width: channels of the fusion network's hidden layers.
        pretrained_path: optional local torchvision ``densenet201`` ImageNet state dict loaded
            into the encoder (only with the default DenseNet-201 shape); nothing is downloaded.
    """

    inputs: ClassVar[tuple[str, ...]] = ("image",)
    input_divisor: ClassVar[int] = 32

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 48, 32),
        num_init_features: int = 64,
        decoder_widths: Sequence[int] = (256, 128, 64, 64, 32),
        fusion_width: int = 64,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        if len(block_config) != 4 or len(decoder_widths) != 5:
            raise ValueError(
                "LFNet: block_config needs 4 entries and decoder_widths 5, got "
                f"{list(block_config)} and {list(decoder_widths)}"
            )
        self.growth_rate = growth_rate
        self.block_config = tuple(block_config)
        self.num_init_features = num_init_features
        self.decoder_widths = tuple(decoder_widths)
        self.fusion_width = fusion_width

        densenet = DenseNet(growth_rate, self.block_config, num_init_features)
        self.encoder = densenet.features
        if pretrained_path is not None:
            self._load_imagenet(pretrained_path)

        skip_channels = [num_init_features]
        c = num_init_features
        for i, n_layers in enumerate(self.block_config):
            c += n_layers * growth_rate
            skip_channels.append(c)
            if i < 3:
                c //= 2
        self.fg_decoder = _Decoder(skip_channels, self.decoder_widths)
        self.bg_decoder = _Decoder(skip_channels, self.decoder_widths)

        # Five 3x3 convs (the paper's fusion network) on image + F + B + both decoders' features.
        w = fusion_width
        c_in = 3 + 2 + 2 * self.decoder_widths[4]
        self.fusion = nn.Sequential(
            _conv_bn_relu(c_in, w),
            _conv_bn_relu(w, w),
            _conv_bn_relu(w, w),
            _conv_bn_relu(w, w),
            nn.Conv2d(w, 1, 3, padding=1),
        )

    def _load_imagenet(self, path: str) -> None:
        state = {_OLD_DENSENET_KEY.sub(r"\1\2", k): v for k, v in read_backbone_state(path).items()}
        encoder = {
            k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
        }
        self.encoder.backbone_weights = load_backbone(
            self.encoder, encoder, path, "torchvision's densenet201 ImageNet state dict"
        )

    def _encode(self, image: Tensor) -> list[Tensor]:
        """Features at strides 2, 4, 8, 16, 32 (after the stem's ReLU, dense blocks 1-3, norm5)."""
        enc = self.encoder
        s2 = enc.relu0(enc.norm0(enc.conv0(image)))
        s4 = enc.denseblock1(enc.pool0(s2))
        s8 = enc.denseblock2(enc.transition1(s4))
        s16 = enc.denseblock3(enc.transition2(s8))
        s32 = F.relu(enc.norm5(enc.denseblock4(enc.transition3(s16))))
        return [s2, s4, s8, s16, s32]

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """Predict both classifications, the blending weight and the fused alpha.

        Args:
            image: ``(B, 3, H, W)`` ImageNet-normalised RGB, ``H`` and ``W`` multiples of 32.

        Returns:
            ``alpha``: ``(B, 1, H, W)`` fused alpha in [0, 1];
            ``fg_logits``, ``bg_logits``: ``(B, 1, H, W)`` raw logits of ``F`` and ``B``;
            ``beta``: ``(B, 1, H, W)`` blending weight in [0, 1]. All at the input size.
        """
        check_divisible(self, image)
        skips = self._encode(image)
        fg_logits, fg_features = self.fg_decoder(skips)
        bg_logits, bg_features = self.bg_decoder(skips)
        fg_prob = torch.sigmoid(fg_logits)
        bg_prob = torch.sigmoid(bg_logits)
        fusion_in = torch.cat([image, fg_prob, bg_prob, fg_features, bg_features], dim=1)
        beta = torch.sigmoid(self.fusion(fusion_in))
        alpha = late_fusion(beta, fg_prob, bg_prob)
        return {"alpha": alpha, "fg_logits": fg_logits, "bg_logits": bg_logits, "beta": beta}

    def arch_config(self) -> dict[str, Any]:
        """Plain values that rebuild this architecture: ``LFNet(**arch_config())``."""
        return {
            "growth_rate": self.growth_rate,
            "block_config": list(self.block_config),
            "num_init_features": self.num_init_features,
            "decoder_widths": list(self.decoder_widths),
            "fusion_width": self.fusion_width,
        }
