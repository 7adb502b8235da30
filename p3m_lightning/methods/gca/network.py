"""GCA-Matting (Li & Lu, AAAI 2020): a ResNet-34-style encoder-decoder with shortcuts and
guided contextual attention, on image + one-hot trimap.

Module names follow the official ``Generator(resnet_gca_encoder_29, res_gca_decoder_22)`` so
that the released ``gca-dist-all-data.pth`` loads with ``load_state_dict`` (after stripping
the ``module.`` prefix of its ``state_dict`` entry).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m_lightning.methods.gca.blocks import (
    DecoderBlock,
    EncoderBlock,
    GuidedContextualAttention,
    SpectralNorm,
    sn_conv,
    sn_deconv,
)
from p3m_lightning.models.encoders import load_backbone, read_backbone_state, widen_input

__all__ = ["GCANet", "trimap_classes", "trimap_guided_gca", "trimap_one_hot"]


BACKGROUND_BELOW = 85
"""Trimap levels under this are background for GCA (``data_generator.py`` ``ToTensor``)."""
FOREGROUND_FROM = 170
"""Trimap levels from this up are foreground for GCA; levels in between are unknown."""


def trimap_classes(trimap: Tensor) -> tuple[Tensor, Tensor]:
    """Background and foreground masks by GCA's thresholds: a level under 85 is background,
    170 or over foreground (the official ``ToTensor``, in training and test alike).

    The trimap is rounded to the nearest 8-bit level first, so float noise of a resize
    (84.99998) stays on its side.

    Args:
        trimap: ``(B, 1, H, W)`` float in [0, 255].

    Returns:
        ``(background, foreground)``: two ``(B, 1, H, W)`` bool masks.
    """
    levels = torch.round(trimap)
    return levels < BACKGROUND_BELOW, levels >= FOREGROUND_FROM


def trimap_guided_gca(alpha: Tensor, trimap: Tensor) -> Tensor:
    """``alpha`` set to 0 on GCA's background and 1 on its foreground (``trimap_classes``),
    as the official ``tester.py`` does on its class map."""
    background, foreground = trimap_classes(trimap)
    alpha = torch.where(background, torch.zeros_like(alpha), alpha)
    return torch.where(foreground, torch.ones_like(alpha), alpha)


def trimap_one_hot(trimap: Tensor) -> Tensor:
    """The official 3-channel trimap encoding: one-hot of background / unknown / foreground
    by GCA's thresholds (``trimap_classes``).

    Args:
        trimap: ``(B, 1, H, W)`` float in [0, 255].

    Returns:
        ``(B, 3, H, W)`` float in {0, 1}; channel 1 is the unknown region.
    """
    background, foreground = trimap_classes(trimap)
    unknown = ~(background | foreground)
    return torch.cat([background, unknown, foreground], dim=1).to(trimap.dtype)


class GCAEncoder(nn.Module):
    """ResNet-D encoder (``resnet_gca_encoder_29``): stem of three 3x3 convs (strides 2, 1, 2),
    four stages of basic blocks, GCA after stage 2, and five shortcut branches.

    Args:
        layers: blocks per stage (official ``(3, 4, 4, 2)``).
    """

    def __init__(self, layers: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.conv1 = sn_conv(6, 32, stride=2)
        self.conv2 = sn_conv(32, 32)
        self.conv3 = sn_conv(32, 64, stride=2)
        self.bn1 = nn.BatchNorm2d(32)
        self.bn2 = nn.BatchNorm2d(32)
        self.bn3 = nn.BatchNorm2d(64)
        self.layer1 = _stage(EncoderBlock, 64, 64, layers[0], stride=1)
        self.layer2 = _stage(EncoderBlock, 64, 128, layers[1], stride=2)
        self.layer3 = _stage(EncoderBlock, 128, 256, layers[2], stride=2)
        self.layer_bottleneck = _stage(EncoderBlock, 256, 512, layers[3], stride=2)
        self.shortcut = nn.ModuleList(
            _shortcut(cin, cout)
            for cin, cout in ((6, 32), (32, 32), (64, 64), (128, 128), (256, 256))
        )
        self.guidance_head = nn.Sequential(
            nn.ReflectionPad2d(1),
            sn_conv(3, 16, stride=2, padding=0),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(16),
            nn.ReflectionPad2d(1),
            sn_conv(16, 32, stride=2, padding=0),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(32),
            nn.ReflectionPad2d(1),
            sn_conv(32, 128, stride=2, padding=0),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(128),
        )
        self.gca = GuidedContextualAttention(128, 128)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor], Tensor, Tensor]:
        """Encode a ``(B, 6, H, W)`` image + one-hot trimap.

        Returns:
            The ``(B, 512, H/32, W/32)`` bottleneck, five shortcut features (32, 32, 64, 128,
            256 channels at H, H/2, H/4, H/8, H/16), the ``(B, 128, H/8, W/8)`` guidance
            features and the ``(B, 1, H/8, W/8)`` unknown mask.
        """
        x1 = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        out = F.relu(self.bn3(self.conv3(x1)))
        guidance = self.guidance_head(x[:, :3])
        unknown = F.interpolate(x[:, 4:5], scale_factor=1 / 8, mode="nearest")
        x2 = self.layer1(out)
        x3 = self.gca(guidance, self.layer2(x2), unknown)
        x4 = self.layer3(x3)
        bottleneck = self.layer_bottleneck(x4)
        shortcuts = [
            branch(f) for branch, f in zip(self.shortcut, (x, x1, x2, x3, x4), strict=True)
        ]
        return bottleneck, shortcuts, guidance, unknown


class GCADecoder(nn.Module):
    """Decoder (``res_gca_decoder_22``): four upsampling stages with shortcut sums, GCA after
    stage 2, a final transposed conv to full size and a 3x3 conv to one channel.

    Args:
        layers: blocks per stage (official ``(2, 3, 3, 2)``).
    """

    def __init__(self, layers: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.layer1 = _stage(DecoderBlock, 512, 256, layers[0], upsample=True)
        self.layer2 = _stage(DecoderBlock, 256, 128, layers[1], upsample=True)
        self.layer3 = _stage(DecoderBlock, 128, 64, layers[2], upsample=True)
        self.layer4 = _stage(DecoderBlock, 64, 32, layers[3], upsample=True)
        self.conv1 = sn_deconv(32)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 1, 3, padding=1)
        self.gca = GuidedContextualAttention(128, 128)

    def forward(
        self, x: Tensor, shortcuts: list[Tensor], guidance: Tensor, unknown: Tensor
    ) -> Tensor:
        """Decode to the raw ``(B, 1, H, W)`` alpha in [0, 1] (``(tanh + 1) / 2``)."""
        fea1, fea2, fea3, fea4, fea5 = shortcuts
        x = self.layer2(self.layer1(x) + fea5) + fea4
        x = self.gca(guidance, x, unknown)
        x = self.layer4(self.layer3(x) + fea3) + fea2
        x = F.leaky_relu(self.bn1(self.conv1(x)), 0.2) + fea1
        return (torch.tanh(self.conv2(x)) + 1.0) / 2.0


def _stage(
    block: type[EncoderBlock] | type[DecoderBlock],
    cin: int,
    cout: int,
    blocks: int,
    stride: int = 1,
    upsample: bool = False,
) -> nn.Sequential:
    if blocks < 1:
        raise ValueError(f"GCANet: every stage needs at least one block, got {blocks}")
    if block is EncoderBlock:
        first: nn.Module = EncoderBlock(cin, cout, stride)
        rest = [EncoderBlock(cout, cout) for _ in range(blocks - 1)]
    else:
        first = DecoderBlock(cin, cout, upsample)
        rest = [DecoderBlock(cout, cout) for _ in range(blocks - 1)]
    return nn.Sequential(first, *rest)


def _shortcut(cin: int, cout: int) -> nn.Sequential:
    # Official order: conv, ReLU, BN (BN after the activation).
    return nn.Sequential(
        sn_conv(cin, cout),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(cout),
        sn_conv(cout, cout),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(cout),
    )


class GCANet(nn.Module):
    """GCA-Matting on the project's contract.

    The trimap is encoded inside ``forward`` as the official one-hot (background, unknown,
    foreground by the thresholds 85 / 170, ``trimap_classes``) and concatenated to the
    ImageNet-normalised image (the official normalisation). The official test code imposes
    the known classes after the network (1 on foreground, 0 on background); here ``forward``
    does it (``trimap_guided_gca``), and also returns the raw prediction.

    Args:
        encoder_layers: blocks per encoder stage; ``(3, 4, 4, 2)`` is the released model.
        decoder_layers: blocks per decoder stage; ``(2, 3, 3, 2)`` is the released model.
        pretrained_path: optional local file of the official ImageNet-pretrained encoder
            (``model_best_resnet34_En_nomixup.pth``, 3-channel ``conv1``); its trimap input
            channels are left at zero, as in the official training.
    """

    inputs: ClassVar[tuple[str, ...]] = ("image", "trimap")
    input_divisor: ClassVar[int] = 32

    def __init__(
        self,
        encoder_layers: tuple[int, int, int, int] | list[int] = (3, 4, 4, 2),
        decoder_layers: tuple[int, int, int, int] | list[int] = (2, 3, 3, 2),
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        self.encoder_layers = tuple(int(n) for n in encoder_layers)
        self.decoder_layers = tuple(int(n) for n in decoder_layers)
        self.encoder = GCAEncoder(self.encoder_layers)  # type: ignore[arg-type]
        self.decoder = GCADecoder(self.decoder_layers)  # type: ignore[arg-type]
        self._init_weights()
        if pretrained_path is not None:
            self._load_pretrained(pretrained_path)

    def _init_weights(self) -> None:
        # As the official code: Xavier for the (non-transposed) convolutions, identity-like
        # residual blocks (zero last BN), GCA outputs near zero, no trimap input at the start.
        for part in (self.encoder, self.decoder):
            for m in part.modules():
                if isinstance(m, SpectralNorm) and isinstance(m.module, nn.Conv2d):
                    nn.init.xavier_uniform_(m.module.weight_bar)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
            for m in part.modules():
                if isinstance(m, (EncoderBlock, DecoderBlock)):
                    nn.init.zeros_(m.bn2.weight)
                elif isinstance(m, GuidedContextualAttention):
                    nn.init.constant_(m.W[1].weight, 1e-3)
        nn.init.xavier_uniform_(self.decoder.conv2.weight)
        with torch.no_grad():
            self.encoder.conv1.module.weight_bar[:, 3:] = 0
        # Random u/v give arbitrary (even negative) sigma estimates, so a fresh model in eval
        # mode would saturate; converge them for the initial weights (checkpoints bring theirs).
        for m in self.modules():
            if isinstance(m, SpectralNorm):
                m.power_iteration(20)

    def _load_pretrained(self, path: str) -> None:
        conv1 = self.encoder.conv1.module
        state = widen_input(read_backbone_state(path), "conv1.module.weight_bar", conv1.weight_bar)
        # As the official loader: the spectral norm's v of conv1 (one entry per input channel
        # and kernel tap) is widened with zeros too, so sigma stays the RGB file's.
        v = state.get("conv1.module.weight_v")
        if v is not None and v.numel() < conv1.weight_v.numel():
            widened = torch.zeros_like(conv1.weight_v)
            widened[: v.numel()] = v
            state = {**state, "conv1.module.weight_v": widened}
        self.encoder.backbone_weights = load_backbone(
            self.encoder,
            state,
            path,
            "the official ImageNet ResNet-34-D encoder (model_best_resnet34_En_nomixup.pth)",
            ("conv1", "conv2", "conv3", "bn1", "bn2", "bn3", "layer1", "layer2", "layer3")
            + ("layer_bottleneck",),
        )

    def forward(self, image: Tensor, trimap: Tensor) -> dict[str, Tensor]:
        """Predict alpha.

        Args:
            image: ``(B, 3, H, W)`` ImageNet-normalised RGB; H, W multiples of 32.
            trimap: ``(B, 1, H, W)`` float in [0, 255].

        Returns:
            ``alpha``: ``(B, 1, H, W)`` in [0, 1] with the trimap's known classes imposed
            (``trimap_guided_gca``); ``alpha_raw``: the network's own ``(B, 1, H, W)``
            prediction in [0, 1].
        """
        h, w = image.shape[2:]
        if h % self.input_divisor or w % self.input_divisor:
            raise ValueError(
                f"GCANet: input size {h}x{w} is not a multiple of {self.input_divisor}; "
                "pad the image and trimap first (the inference strategy does this)."
            )
        x = torch.cat([image, trimap_one_hot(trimap).to(image.dtype)], dim=1)
        bottleneck, shortcuts, guidance, unknown = self.encoder(x)
        raw = self.decoder(bottleneck, shortcuts, guidance, unknown)
        return {"alpha": trimap_guided_gca(raw, trimap), "alpha_raw": raw}

    def arch_config(self) -> dict[str, Any]:
        """Plain values that rebuild this architecture: ``GCANet(**arch_config())``."""
        return {
            "encoder_layers": list(self.encoder_layers),
            "decoder_layers": list(self.decoder_layers),
        }
