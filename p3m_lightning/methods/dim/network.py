"""Deep Image Matting (Xu et al., CVPR 2017): a VGG-16 encoder-decoder on image + trimap
(4 channels) with max-unpooling in the decoder, and a small refinement stage.

The authors released no code; module names follow open-mmlab/mmagic's DIM
(``backbone.encoder`` = ``VGG16(in_channels=4)``, ``backbone.decoder`` = ``PlainDecoder``,
``refiner`` = ``PlainRefiner``) so that its released stage-3 checkpoint's ``state_dict``
loads with ``load_state_dict``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m_lightning.models.encoders import load_backbone, read_backbone_state, widen_input
from p3m_lightning.models.trimap_guided import trimap_guided

__all__ = ["DIMNet"]


def _vgg_stage(cin: int, cout: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class VGG16Encoder(nn.Module):
    """VGG-16 convolutions (13 3x3 convs in 5 stages, 2x2 max-pooling that keeps its indices)
    and a 1x1 ``conv6``; the first conv takes 4 channels.

    Args:
        width: channels of the first stage (64 in DIM); the others are 2x, 4x, 8x, 8x.
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        w = (width, 2 * width, 4 * width, 8 * width, 8 * width)
        self.layer1 = _vgg_stage(4, w[0], 2)
        self.layer2 = _vgg_stage(w[0], w[1], 2)
        self.layer3 = _vgg_stage(w[1], w[2], 3)
        self.layer4 = _vgg_stage(w[2], w[3], 3)
        self.layer5 = _vgg_stage(w[3], w[4], 3)
        self.conv6 = nn.Conv2d(w[4], w[4], 1)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Encode ``(B, 4, H, W)``; returns the 1/32 features and the five pooling indices."""
        indices = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4, self.layer5):
            x, idx = F.max_pool2d(stage(x), 2, stride=2, return_indices=True)
            indices.append(idx)
        return F.relu(self.conv6(x)), indices


class PlainDecoder(nn.Module):
    """DIM decoder: a 1x1 conv, then five (max-unpool with the encoder's indices, 5x5 conv,
    ReLU) steps, and a 5x5 conv to the one-channel alpha logit.

    Args:
        width: as in ``VGG16Encoder``.
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        w8, w4, w2 = 8 * width, 4 * width, 2 * width
        self.deconv6_1 = nn.Conv2d(w8, w8, 1)
        self.deconv5_1 = nn.Conv2d(w8, w8, 5, padding=2)
        self.deconv4_1 = nn.Conv2d(w8, w4, 5, padding=2)
        self.deconv3_1 = nn.Conv2d(w4, w2, 5, padding=2)
        self.deconv2_1 = nn.Conv2d(w2, width, 5, padding=2)
        self.deconv1_1 = nn.Conv2d(width, width, 5, padding=2)
        self.deconv1 = nn.Conv2d(width, 1, 5, padding=2)

    def forward(self, x: Tensor, indices: list[Tensor]) -> Tensor:
        """Decode to the ``(B, 1, H, W)`` alpha logit."""
        x = F.relu(self.deconv6_1(x))
        convs = (self.deconv5_1, self.deconv4_1, self.deconv3_1, self.deconv2_1, self.deconv1_1)
        for conv, idx in zip(convs, reversed(indices), strict=True):
            x = F.relu(conv(F.max_unpool2d(x, idx, 2, stride=2)))
        return self.deconv1(x)


class EncoderDecoder(nn.Module):
    """The DIM encoder-decoder (mmagic's ``SimpleEncoderDecoder``)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.encoder = VGG16Encoder(width)
        self.decoder = PlainDecoder(width)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(*self.encoder(x))


class PlainRefiner(nn.Module):
    """DIM refinement stage: four 3x3 convs on (image, predicted alpha); the output is added
    to the encoder-decoder's logit before the sigmoid.

    Args:
        channels: width of the three hidden convs (64 in DIM).
    """

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.refine_conv1 = nn.Conv2d(4, channels, 3, padding=1)
        self.refine_conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.refine_conv3 = nn.Conv2d(channels, channels, 3, padding=1)
        self.refine_pred = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, x: Tensor, logit: Tensor) -> Tensor:
        out = F.relu(self.refine_conv1(x))
        out = F.relu(self.refine_conv2(out))
        out = F.relu(self.refine_conv3(out))
        return torch.sigmoid(logit + self.refine_pred(out))


class DIMNet(nn.Module):
    """Deep Image Matting on the project's contract.

    Input: the ImageNet-normalised image and the trimap / 255 as a 4th channel (mmagic's
    ``rescale_to_zero_one``). ``alpha_pred = sigmoid(encoder-decoder)``; with ``refine`` the
    refinement stage gives ``alpha_refined`` and the final alpha, as at mmagic's stage-3 test.
    The trimap's known regions are imposed on the final ``alpha`` (mmagic does it in its test
    post-processing).

    Args:
        width: first-stage VGG width (64 = DIM); smaller values only for tests.
        refine: whether the refinement stage exists and gives the final alpha.
        refiner_channels: hidden width of the refinement stage (64 = DIM).
        pretrained_path: optional local VGG-16 state dict with this encoder's names
            (``layer1.0.weight`` ...); a 3-channel first conv gets a zero trimap channel.
    """

    inputs: ClassVar[tuple[str, ...]] = ("image", "trimap")
    input_divisor: ClassVar[int] = 32

    def __init__(
        self,
        width: int = 64,
        refine: bool = True,
        refiner_channels: int = 64,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        self.width = width
        self.refine = refine
        self.refiner_channels = refiner_channels
        self.backbone = EncoderDecoder(width)
        self.refiner = PlainRefiner(refiner_channels) if refine else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        if pretrained_path is not None:
            self._load_pretrained(pretrained_path)

    def _load_pretrained(self, path: str) -> None:
        encoder = self.backbone.encoder
        state = widen_input(read_backbone_state(path), "layer1.0.weight", encoder.layer1[0].weight)
        # VGG-16's 13 convolutions are the backbone; the 1x1 conv6 is taken when the file
        # has it (mmagic's converted weights), else it keeps its Xavier start.
        parts = ("layer1", "layer2", "layer3", "layer4", "layer5")
        parts += ("conv6",) if "conv6.weight" in state else ()
        encoder.backbone_weights = load_backbone(
            encoder,
            state,
            path,
            "a VGG-16 state dict in mmagic's names (layer1.0.weight, ...)",
            parts,
        )

    def forward(self, image: Tensor, trimap: Tensor) -> dict[str, Tensor]:
        """Predict alpha.

        Args:
            image: ``(B, 3, H, W)`` ImageNet-normalised RGB; H, W multiples of 32.
            trimap: ``(B, 1, H, W)`` float in [0, 255].

        Returns:
            ``alpha`` (final, trimap-guided), ``alpha_pred`` (encoder-decoder) and, with
            ``refine``, ``alpha_refined``: ``(B, 1, H, W)`` in [0, 1].
        """
        h, w = image.shape[2:]
        if h % self.input_divisor or w % self.input_divisor:
            raise ValueError(
                f"DIMNet: input size {h}x{w} is not a multiple of {self.input_divisor}; "
                "pad the image and trimap first (the inference strategy does this)."
            )
        logit = self.backbone(torch.cat([image, trimap.to(image.dtype) / 255.0], dim=1))
        out = {"alpha_pred": torch.sigmoid(logit)}
        final = out["alpha_pred"]
        if self.refiner is not None:
            out["alpha_refined"] = self.refiner(torch.cat([image, out["alpha_pred"]], dim=1), logit)
            final = out["alpha_refined"]
        out["alpha"] = trimap_guided(final, trimap)
        return out

    def arch_config(self) -> dict[str, Any]:
        """Plain values that rebuild this architecture: ``DIMNet(**arch_config())``."""
        return {
            "width": self.width,
            "refine": self.refine,
            "refiner_channels": self.refiner_channels,
        }
