"""GFM, Glance and Focus Matting (Li et al., IJCV 2022), ResNet-34 variant ``GFM(r)``.

A shared ResNet-34 encoder feeds two decoders: the glance decoder (PSP-guided, semantic
classes) and the focus decoder (U-Net skips, alpha in the transition region). Collaborative
matting fuses them by the glance argmax. Module names follow the authors' ``core/gfm.py`` with
``backbone='r34'`` so that their released ``GFM(r)-TT/FT/BT`` checkpoints load.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m_lightning.models.contract import check_divisible
from p3m_lightning.models.encoders import load_backbone, read_backbone_state
from p3m_lightning.models.trimap_guided import fuse
from p3m_lightning.normalization import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["GFMNet", "ResNet34", "collaborative_matting"]

ROSTAS = ("TT", "FT", "BT")


def collaborative_matting(rosta: str, glance_logits: Tensor, focus: Tensor) -> Tensor:
    """Fuse glance and focus by the glance argmax (the paper's Collaborative Matting).

    - ``TT`` (3 classes 0 bg / 1 transition / 2 fg): ``focus`` on transition, 1 on fg.
    - ``FT`` (2 classes, 1 = foreground eroded): ``min(class + focus, 1)``.
    - ``BT`` (2 classes, 1 = foreground dilated): ``max(class - focus, 0)``.

    Args:
        rosta: one of ``TT``, ``FT``, ``BT``.
        glance_logits: ``(B, 3, H, W)`` for TT, ``(B, 2, H, W)`` for FT/BT.
        focus: ``(B, 1, H, W)`` in [0, 1].

    Returns:
        ``(B, 1, H, W)`` alpha in [0, 1]; no gradient flows into ``glance_logits``.
    """
    # The reference takes the argmax of the sigmoid, not of the logits: where float32 sigmoids
    # saturate to 1.0 the tie goes to the lower class, and released weights expect that.
    glance = torch.sigmoid(glance_logits)
    if rosta == "TT":
        return fuse(glance, focus)
    cls = glance.argmax(dim=1, keepdim=True).to(focus.dtype)
    if rosta == "FT":
        return (cls + focus).clamp(max=1.0)
    if rosta == "BT":
        return (cls - focus).clamp(min=0.0)
    raise ValueError(f"rosta must be one of {ROSTAS}, got {rosta!r}")


class _BasicBlock(nn.Module):
    """ResNet basic block; names ``conv1/bn1/conv2/bn2/downsample`` as torchvision's."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet34(nn.Module):
    """ResNet-34 with torchvision's module names and a width knob (64 = the real one).

    The classifier ``fc`` is unused by GFM but is part of its checkpoints (the authors keep the
    whole torchvision model as ``self.resnet``), so it is kept for strict loading.

    Args:
        width: channels of the stem and ``layer1``; later stages use 2x, 4x, 8x.
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = (width, 2 * width, 4 * width, 8 * width)
        blocks = (3, 4, 6, 3)
        c_in = width
        for i, (c_out, n) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            layer = [_BasicBlock(c_in, c_out, stride)] + [
                _BasicBlock(c_out, c_out, 1) for _ in range(n - 1)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            c_in = c_out
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * width, 1000)


class _PSPModule(nn.Module):
    """Pyramid pooling: pooled 1x1 projections at ``sizes``, upsampled and concatenated."""

    def __init__(self, channels: int, sizes: tuple[int, ...] = (1, 3, 5)) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), nn.Conv2d(channels, channels, 1, bias=False))
            for s in sizes
        )
        self.bottleneck = nn.Conv2d(channels * (len(sizes) + 1), channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        priors = [
            F.interpolate(stage(x), size=size, mode="bilinear", align_corners=True)
            for stage in self.stages
        ]
        return F.relu(self.bottleneck(torch.cat([*priors, x], dim=1)))


def _conv_bn_relu(c_in: int, c_out: int, dilation: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def _psp_up(c_in: int, c_out: int, scale: int) -> nn.Sequential:
    """PSP feature projected to ``c_out`` and upsampled ``scale`` times (``psp1``..``psp4``)."""
    return nn.Sequential(
        *_conv_bn_relu(c_in, c_out),
        nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False),
    )


def _decoder(c_in: int, c_mid1: int, c_mid2: int, c_out: int, last_bn_relu: bool) -> nn.Sequential:
    """Three 3x3 convs, then a 2x bilinear upsample (indices 0..6/7/8 as the reference)."""
    layers = [*_conv_bn_relu(c_in, c_mid1), *_conv_bn_relu(c_mid1, c_mid2)]
    layers.append(nn.Conv2d(c_mid2, c_out, 3, padding=1))
    if last_bn_relu:
        layers += [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    return nn.Sequential(*layers)


class GFMNet(nn.Module):
    """GFM(r): ResNet-34 encoder, glance and focus decoders, collaborative matting.

    Args:
        rosta: representation of semantic and transition areas: ``TT`` (3-class glance,
            the P3M benchmark's and the official default), ``FT`` or ``BT`` (2-class).
        width: ResNet stem width; 64 is the published model (55.29 M parameters), smaller
            values (e.g. 8) give a tiny model for tests. Every layer scales with it.
        pretrained_path: optional local torchvision ResNet-34 ImageNet state dict
            (``resnet34-*.pth``) loaded into the encoder; nothing is downloaded.
    """

    inputs: ClassVar[tuple[str, ...]] = ("image",)
    input_divisor: ClassVar[int] = 32

    def __init__(self, rosta: str = "TT", width: int = 64, pretrained_path: str | None = None):
        super().__init__()
        if rosta not in ROSTAS:
            raise ValueError(f"GFMNet: rosta must be one of {ROSTAS}, got {rosta!r}")
        self.rosta = rosta
        self.width = width
        w = width
        c1, c2, c3, c4 = w, 2 * w, 4 * w, 8 * w
        glance_classes = 3 if rosta == "TT" else 2

        self.resnet = ResNet34(w)
        if pretrained_path is not None:
            self.resnet.backbone_weights = load_backbone(
                self.resnet,
                read_backbone_state(pretrained_path),
                pretrained_path,
                "a torchvision ResNet-34 state dict",
            )
        # The reference registers the same ResNet modules twice (as ``resnet.*`` and as
        # ``encoder*``), so its checkpoints carry both names; sharing the modules keeps both.
        self.encoder0 = nn.Sequential(self.resnet.conv1, self.resnet.bn1, self.resnet.relu)
        self.encoder1 = nn.Sequential(self.resnet.maxpool, self.resnet.layer1)
        self.encoder2 = self.resnet.layer2
        self.encoder3 = self.resnet.layer3
        self.encoder4 = self.resnet.layer4

        self.psp_module = _PSPModule(c4)
        self.psp4 = _psp_up(c4, c3, 2)
        self.psp3 = _psp_up(c4, c2, 4)
        self.psp2 = _psp_up(c4, c1, 8)
        self.psp1 = _psp_up(c4, c1, 16)
        self.decoder4_g = _decoder(2 * c4, c4, c4, c3, True)
        self.decoder3_g = _decoder(c4, c3, c3, c2, True)
        self.decoder2_g = _decoder(c3, c2, c2, c1, True)
        self.decoder1_g = _decoder(c2, c1, c1, c1, True)

        self.bridge_block = nn.Sequential(
            *_conv_bn_relu(c4, c4, 2), *_conv_bn_relu(c4, c4, 2), *_conv_bn_relu(c4, c4, 2)
        )
        self.decoder4_f = _decoder(2 * c4, c4, c4, c3, True)
        self.decoder3_f = _decoder(c4, c3, c3, c2, True)
        self.decoder2_f = _decoder(c3, c2, c2, c1, True)
        self.decoder1_f = _decoder(c2, c1, c1, c1, True)

        self.decoder0_g = _decoder(2 * c1, c1, c1, glance_classes, False)
        self.decoder0_f = _decoder(2 * c1, c1, c1, 1, False)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """Predict glance, focus and fused alpha.

        The reference feeds un-normalised RGB in [0, 255]; the ImageNet-normalised input is
        mapped back to that range here so the released weights see what they were trained on.

        Args:
            image: ``(B, 3, H, W)`` ImageNet-normalised RGB, ``H`` and ``W`` multiples of 32.

        Returns:
            ``alpha``: ``(B, 1, H, W)`` fused alpha in [0, 1];
            ``glance_logits``: ``(B, 3, H, W)`` (TT) or ``(B, 2, H, W)`` (FT/BT) raw logits;
            ``focus``: ``(B, 1, H, W)`` focus alpha in [0, 1].
        """
        check_divisible(self, image)
        mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        x = (image * std + mean) * 255.0

        e0 = self.encoder0(x)
        e1 = self.encoder1(e0)
        e2 = self.encoder2(e1)
        e3 = self.encoder3(e2)
        e4 = self.encoder4(e3)

        psp = self.psp_module(e4)
        d4_g = self.decoder4_g(torch.cat((psp, e4), 1))
        d3_g = self.decoder3_g(torch.cat((self.psp4(psp), d4_g), 1))
        d2_g = self.decoder2_g(torch.cat((self.psp3(psp), d3_g), 1))
        d1_g = self.decoder1_g(torch.cat((self.psp2(psp), d2_g), 1))
        glance_logits = self.decoder0_g(torch.cat((self.psp1(psp), d1_g), 1))

        bb = self.bridge_block(e4)
        d4_f = self.decoder4_f(torch.cat((bb, e4), 1))
        d3_f = self.decoder3_f(torch.cat((d4_f, e3), 1))
        d2_f = self.decoder2_f(torch.cat((d3_f, e2), 1))
        d1_f = self.decoder1_f(torch.cat((d2_f, e1), 1))
        focus = torch.sigmoid(self.decoder0_f(torch.cat((d1_f, e0), 1)))

        alpha = collaborative_matting(self.rosta, glance_logits, focus)
        return {"alpha": alpha, "glance_logits": glance_logits, "focus": focus}

    def arch_config(self) -> dict[str, Any]:
        """Plain values that rebuild this architecture: ``GFMNet(**arch_config())``."""
        return {"rosta": self.rosta, "width": self.width}
