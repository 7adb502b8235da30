"""MODNet (Ke et al., AAAI 2022): trimap-free portrait matting in three branches.

A MobileNetV2 encoder feeds the low-resolution (semantic) branch, whose 1/8 feature guides the
high-resolution (detail) branch; the fusion branch combines both into the alpha matte. Module
names follow the authors' ``src/models/modnet.py`` so that their released
``modnet_photographic_portrait_matting.ckpt`` loads (after stripping ``module.``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m_lightning.models.contract import check_divisible
from p3m_lightning.models.encoders import load_backbone, read_backbone_state
from p3m_lightning.normalization import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["MODNet", "MobileNetV2"]


# (expansion, channels, repeats, stride) of MobileNetV2's inverted-residual stages.
_MBV2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
# Feature indices after which the encoder taps strides 2, 4, 8, 16, 32.
_TAPS = (2, 4, 7, 14, 19)


def _make_divisible(v: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


def _conv_bn_relu6(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU6(inplace=True),
    )


class _InvertedResidual(nn.Module):
    """MobileNetV2 block: (1x1 expand) -> 3x3 depthwise -> 1x1 project, residual if shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = round(c_in * expansion)
        self.use_residual = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += list(_conv_bn_relu6(c_in, hidden, 1, 1))
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 features (no classifier), returning the maps at strides 2, 4, 8, 16, 32.

    Args:
        width_mult: channel multiplier (1.0 = the published model); the last 1x1 layer stays
            at 1280 channels unless ``width_mult > 1``, as in the reference.
    """

    def __init__(self, width_mult: float = 1.0) -> None:
        super().__init__()
        c_in = _make_divisible(32 * width_mult)
        features: list[nn.Module] = [_conv_bn_relu6(3, c_in, 3, 2)]
        stage_channels = []
        for expansion, channels, repeats, stride in _MBV2_STAGES:
            c_out = _make_divisible(int(channels * width_mult))
            for i in range(repeats):
                features.append(_InvertedResidual(c_in, c_out, stride if i == 0 else 1, expansion))
                c_in = c_out
            stage_channels.append(c_out)
        last = _make_divisible(1280 * width_mult) if width_mult > 1.0 else 1280
        features.append(_conv_bn_relu6(c_in, last, 1, 1))
        self.features = nn.Sequential(*features)
        # Channels at strides 2, 4, 8, 16, 32 (the 16x tap is after the 96-channel stage).
        self.enc_channels = (
            stage_channels[0], stage_channels[1], stage_channels[2], stage_channels[4], last
        )  # fmt: skip

    def forward(self, x: Tensor) -> list[Tensor]:
        taps = []
        start = 0
        for end in _TAPS:
            for layer in self.features[start:end]:
                x = layer(x)
            taps.append(x)
            start = end
        return taps


class _Backbone(nn.Module):
    """Holds the encoder as ``model`` (the reference's wrapper, kept for its key names)."""

    def __init__(self, width_mult: float) -> None:
        super().__init__()
        self.model = MobileNetV2(width_mult)
        self.enc_channels = self.model.enc_channels

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.model(x)


class _IBNorm(nn.Module):
    """BatchNorm on the first half of the channels, affine-free InstanceNorm on the rest."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn_channels = channels // 2
        self.bnorm = nn.BatchNorm2d(self.bn_channels)
        self.inorm = nn.InstanceNorm2d(channels - self.bn_channels, affine=False)

    def forward(self, x: Tensor) -> Tensor:
        c = self.bn_channels
        return torch.cat((self.bnorm(x[:, :c].contiguous()), self.inorm(x[:, c:].contiguous())), 1)


class _ConvIBNReLU(nn.Module):
    """Conv (with bias) + optional IBNorm + optional ReLU, held as ``layers``."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int = 1, norm_act: bool = True
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2)]
        if norm_act:
            layers += [_IBNorm(c_out), nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class _SEBlock(nn.Module):
    """Squeeze-and-excitation channel attention (reduction 4, no biases)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        w = self.fc(x.mean(dim=(2, 3)))
        return x * w[:, :, None, None]


def _up(x: Tensor, scale: float) -> Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


class _LRBranch(nn.Module):
    """Semantic branch: SE on the 1/32 feature, two 5x5 stages to 1/8, a stride-2 head at 1/16."""

    def __init__(self, backbone: _Backbone) -> None:
        super().__init__()
        enc = backbone.enc_channels
        self.backbone = backbone
        self.se_block = _SEBlock(enc[4])
        self.conv_lr16x = _ConvIBNReLU(enc[4], enc[3], 5)
        self.conv_lr8x = _ConvIBNReLU(enc[3], enc[2], 5)
        self.conv_lr = _ConvIBNReLU(enc[2], 1, 3, stride=2, norm_act=False)

    def forward(self, img: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        enc2x, enc4x, _, _, enc32x = self.backbone(img)
        lr16x = self.conv_lr16x(_up(self.se_block(enc32x), 2))
        lr8x = self.conv_lr8x(_up(lr16x, 2))
        semantic = torch.sigmoid(self.conv_lr(lr8x))
        return semantic, lr8x, enc2x, enc4x


class _HRBranch(nn.Module):
    """Detail branch at 1/4 and 1/2 resolution, with a full-resolution detail head."""

    def __init__(self, hr: int, enc: tuple[int, ...]) -> None:
        super().__init__()
        self.tohr_enc2x = _ConvIBNReLU(enc[0], hr, 1)
        self.conv_enc2x = _ConvIBNReLU(hr + 3, hr, 3, stride=2)
        self.tohr_enc4x = _ConvIBNReLU(enc[1], hr, 1)
        self.conv_enc4x = _ConvIBNReLU(2 * hr, 2 * hr, 3)
        self.conv_hr4x = nn.Sequential(
            _ConvIBNReLU(3 * hr + 3, 2 * hr, 3),
            _ConvIBNReLU(2 * hr, 2 * hr, 3),
            _ConvIBNReLU(2 * hr, hr, 3),
        )
        self.conv_hr2x = nn.Sequential(
            _ConvIBNReLU(2 * hr, 2 * hr, 3),
            _ConvIBNReLU(2 * hr, hr, 3),
            _ConvIBNReLU(hr, hr, 3),
            _ConvIBNReLU(hr, hr, 3),
        )
        self.conv_hr = nn.Sequential(
            _ConvIBNReLU(hr + 3, hr, 3), _ConvIBNReLU(hr, 1, 1, norm_act=False)
        )

    def forward(
        self, img: Tensor, enc2x: Tensor, enc4x: Tensor, lr8x: Tensor
    ) -> tuple[Tensor, Tensor]:
        img2x = _up(img, 1 / 2)
        img4x = _up(img, 1 / 4)
        enc2x = self.tohr_enc2x(enc2x)
        hr4x = self.conv_enc2x(torch.cat((img2x, enc2x), 1))
        hr4x = self.conv_enc4x(torch.cat((hr4x, self.tohr_enc4x(enc4x)), 1))
        hr4x = self.conv_hr4x(torch.cat((hr4x, _up(lr8x, 2), img4x), 1))
        hr2x = self.conv_hr2x(torch.cat((_up(hr4x, 2), enc2x), 1))
        detail = torch.sigmoid(self.conv_hr(torch.cat((_up(hr2x, 2), img), 1)))
        return detail, hr2x


class _FusionBranch(nn.Module):
    """Fuses the semantic 1/8 feature with the detail 1/2 feature into the full-size matte."""

    def __init__(self, hr: int, enc: tuple[int, ...]) -> None:
        super().__init__()
        self.conv_lr4x = _ConvIBNReLU(enc[2], hr, 5)
        self.conv_f2x = _ConvIBNReLU(2 * hr, hr, 3)
        self.conv_f = nn.Sequential(
            _ConvIBNReLU(hr + 3, hr // 2, 3), _ConvIBNReLU(hr // 2, 1, 1, norm_act=False)
        )

    def forward(self, img: Tensor, lr8x: Tensor, hr2x: Tensor) -> Tensor:
        lr2x = _up(self.conv_lr4x(_up(lr8x, 2)), 2)
        f2x = self.conv_f2x(torch.cat((lr2x, hr2x), 1))
        return torch.sigmoid(self.conv_f(torch.cat((_up(f2x, 2), img), 1)))


class MODNet(nn.Module):
    """MODNet: MobileNetV2 encoder, semantic (LR), detail (HR) and fusion branches.

    Args:
        hr_channels: width of the detail and fusion branches (32 in the published model).
        width_mult: MobileNetV2 channel multiplier (1.0 published; e.g. 0.25 for tests).
        pretrained_path: optional local state dict of the encoder's MobileNetV2 (the
            reference starts from ``mobilenetv2_human_seg.ckpt``, keys ``features.*``);
            nothing is downloaded.
    """

    inputs: ClassVar[tuple[str, ...]] = ("image",)
    input_divisor: ClassVar[int] = 32

    def __init__(
        self, hr_channels: int = 32, width_mult: float = 1.0, pretrained_path: str | None = None
    ) -> None:
        super().__init__()
        self.hr_channels = hr_channels
        self.width_mult = width_mult
        # Registered here and again inside lr_branch, as in the reference: its checkpoint
        # carries every encoder tensor under both ``backbone.*`` and ``lr_branch.backbone.*``.
        self.backbone = _Backbone(width_mult)
        self.lr_branch = _LRBranch(self.backbone)
        self.hr_branch = _HRBranch(hr_channels, self.backbone.enc_channels)
        self.f_branch = _FusionBranch(hr_channels, self.backbone.enc_channels)
        # The reference's initialisation of every convolution, encoder included.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=0, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if pretrained_path is not None:
            self.backbone.model.backbone_weights = load_backbone(
                self.backbone.model,
                read_backbone_state(pretrained_path),
                pretrained_path,
                "the MobileNetV2 state dict of the official mobilenetv2_human_seg.ckpt",
            )

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """Predict the semantic map, the detail map and the fused alpha.

        MODNet was trained on RGB normalised with mean 0.5 and std 0.5 (values in [-1, 1]);
        the ImageNet-normalised input is converted to that here.

        Args:
            image: ``(B, 3, H, W)`` ImageNet-normalised RGB, ``H`` and ``W`` multiples of 32.

        Returns:
            ``alpha``: ``(B, 1, H, W)`` fused matte in [0, 1];
            ``semantic``: ``(B, 1, H/16, W/16)`` coarse foreground probability in [0, 1];
            ``detail``: ``(B, 1, H, W)`` detail alpha in [0, 1] (meant for the transition).
        """
        check_divisible(self, image)
        mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        img = (image * std + mean - 0.5) / 0.5
        semantic, lr8x, enc2x, enc4x = self.lr_branch(img)
        detail, hr2x = self.hr_branch(img, enc2x, enc4x, lr8x)
        alpha = self.f_branch(img, lr8x, hr2x)
        return {"alpha": alpha, "semantic": semantic, "detail": detail}

    def arch_config(self) -> dict[str, Any]:
        """Plain values that rebuild this architecture: ``MODNet(**arch_config())``."""
        return {"hr_channels": self.hr_channels, "width_mult": self.width_mult}
