"""AlphaGAN (Lutz, Amplianitis & Smolic, BMVC 2018): a ResNet-50 + ASPP encoder-decoder
generator on image + trimap, trained adversarially against a PatchGAN discriminator that sees
composites.

No official code or checkpoint was released; the layout follows the paper's description
(ResNet-50 with an atrous last stage, ASPP, a decoder with skip connections and unpooling
with the first max-pooling's indices; a 70x70 PatchGAN of pix2pix). Module names are ours.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck, ResNet

from p3m_lightning.models.encoders import load_backbone, read_backbone_state, widen_input
from p3m_lightning.models.layers import ASPP, conv_bn_relu
from p3m_lightning.models.trimap_guided import trimap_guided

__all__ = ["AlphaGANGenerator"]


class AlphaGANGenerator(nn.Module):
    """The AlphaGAN generator on the project's contract.

    Encoder: ResNet-50 (4 input channels: ImageNet-normalised image + trimap / 255), last
    stage atrous (output stride 16), ASPP. Decoder: bilinear x4 to 1/4 with the layer-1 skip,
    max-unpooling to 1/2 with the stem pooling's indices and the stem skip, bilinear x2 to full
    size with the input itself, a sigmoid alpha. As for the other trimap-based methods, the
    trimap's known regions are imposed on the final ``alpha``; ``alpha_pred`` is the network's.

    Args:
        width: ResNet base width (64 = ResNet-50); smaller values only for tests.
        aspp_width: ASPP and decoder width (256 in DeepLab-v3).
        pretrained_path: optional local torchvision ResNet-50 state dict (``conv1.weight``,
            ``layer1.0.conv1.weight`` ...); the trimap channel of ``conv1`` starts at zero.
    """

    inputs: ClassVar[tuple[str, ...]] = ("image", "trimap")
    input_divisor: ClassVar[int] = 16

    def __init__(
        self, width: int = 64, aspp_width: int = 256, pretrained_path: str | None = None
    ) -> None:
        super().__init__()
        self.width, self.aspp_width = width, aspp_width
        self.encoder = ResNet(
            Bottleneck, [3, 4, 6, 3], replace_stride_with_dilation=[False, False, True]
        )
        self._narrow_encoder(width)
        del self.encoder.fc
        stem, l1, top = self.encoder.bn1.num_features, 4 * self._planes(1), 4 * self._planes(4)
        self.aspp = ASPP(top, aspp_width)
        self.skip1 = conv_bn_relu(l1, 48, 1)
        self.fuse1 = nn.Sequential(
            conv_bn_relu(aspp_width + 48, aspp_width), conv_bn_relu(aspp_width, aspp_width)
        )
        self.to_stem = conv_bn_relu(aspp_width, stem, 1)
        self.fuse2 = conv_bn_relu(2 * stem, 32)
        self.fuse3 = conv_bn_relu(32 + 4, 32)
        self.pred = nn.Conv2d(32, 1, 3, padding=1)
        if pretrained_path is not None:
            self._load_pretrained(pretrained_path)

    def _planes(self, stage: int) -> int:
        return getattr(self.encoder, f"layer{stage}")[0].conv3.out_channels // 4

    def _narrow_encoder(self, width: int) -> None:
        # The stem takes 4 channels; test widths rebuild the stages at narrower channel counts
        # (torchvision's width_per_group would only narrow the 3x3 convs).
        if width != 64:
            base = ResNet(
                Bottleneck, [3, 4, 6, 3], replace_stride_with_dilation=[False, False, True]
            )
            base.inplanes = width
            base.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
            base.bn1 = nn.BatchNorm2d(width)
            base.layer1 = base._make_layer(Bottleneck, width, 3)
            base.layer2 = base._make_layer(Bottleneck, 2 * width, 4, stride=2)
            base.layer3 = base._make_layer(Bottleneck, 4 * width, 6, stride=2)
            base.layer4 = base._make_layer(Bottleneck, 8 * width, 3, stride=1, dilate=True)
            self.encoder = base
        self.encoder.conv1 = nn.Conv2d(4, self.encoder.conv1.out_channels, 7, 2, 3, bias=False)

    def _load_pretrained(self, path: str) -> None:
        state = widen_input(read_backbone_state(path), "conv1.weight", self.encoder.conv1.weight)
        self.encoder.backbone_weights = load_backbone(
            self.encoder, state, path, "a torchvision ResNet-50 state dict (conv1.weight, ...)"
        )

    def forward(self, image: Tensor, trimap: Tensor) -> dict[str, Tensor]:
        """Predict alpha.

        Args:
            image: ``(B, 3, H, W)`` ImageNet-normalised RGB; H, W multiples of 16.
            trimap: ``(B, 1, H, W)`` float in [0, 255].

        Returns:
            ``alpha`` (trimap-guided) and ``alpha_pred`` (the generator's), ``(B, 1, H, W)`` in
            [0, 1].
        """
        h, w = image.shape[2:]
        if h % self.input_divisor or w % self.input_divisor:
            raise ValueError(
                f"AlphaGANGenerator: input size {h}x{w} is not a multiple of {self.input_divisor}; "
                "pad the image and trimap first (the inference strategy does this)."
            )
        x = torch.cat([image, trimap.to(image.dtype) / 255.0], dim=1)
        e = self.encoder
        stem = e.relu(e.bn1(e.conv1(x)))
        pooled, indices = F.max_pool2d(stem, 3, stride=2, padding=1, return_indices=True)
        l1 = e.layer1(pooled)
        y = self.aspp(e.layer4(e.layer3(e.layer2(l1))))
        y = F.interpolate(y, size=l1.shape[2:], mode="bilinear", align_corners=False)
        y = self.fuse1(torch.cat([y, self.skip1(l1)], dim=1))
        y = F.max_unpool2d(
            self.to_stem(y), indices, 3, stride=2, padding=1, output_size=stem.shape[2:]
        )
        y = self.fuse2(torch.cat([y, stem], dim=1))
        y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(self.pred(self.fuse3(torch.cat([y, x], dim=1))))
        return {"alpha": trimap_guided(alpha, trimap), "alpha_pred": alpha}

    def arch_config(self) -> dict[str, Any]:
        """Plain values that rebuild this architecture."""
        return {"width": self.width, "aspp_width": self.aspp_width}
