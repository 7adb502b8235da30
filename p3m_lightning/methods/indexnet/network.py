"""IndexNet Matting (Lu et al., ICCV 2019): MobileNetV2 encoder-decoder whose down- and
upsampling are driven by learned index maps, on image + trimap (4 channels).

The configuration is the released one (``decoder='indexnet'``, output stride 32, ASPP,
depthwise many-to-one index blocks with context and nonlinearity, 5x5 decoder convs), and
module names follow it, so the released ``indexnet_matting.pth.tar`` loads with
``load_state_dict`` after stripping the ``module.`` prefix of its ``state_dict`` entry.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m_lightning.methods.indexnet.blocks import (
    ASPP,
    IndexBlock,
    IndexedUpsampling,
    InvertedResidual,
    conv_bn,
)
from p3m_lightning.models.encoders import load_backbone, read_backbone_state, widen_input
from p3m_lightning.models.trimap_guided import trimap_guided

__all__ = ["IndexNet"]

# MobileNetV2 stages: (expand ratio, input channels, output channels, blocks). IndexNet runs
# every block at stride 1 and dilation 1 and pools with index maps after stages 0, 2, 3, 4, 6.
_STAGES = (
    (1, 32, 16, 1),
    (6, 16, 24, 2),
    (6, 24, 32, 3),
    (6, 32, 64, 4),
    (6, 64, 96, 3),
    (6, 96, 160, 3),
    (6, 160, 320, 1),
)

# Decoder stages (name, channels after concatenation, output channels), deepest first.
_DECODER = (
    ("decoder_layer6", 160 * 2, 96),
    ("decoder_layer5", 96 * 2, 64),
    ("decoder_layer4", 64 * 2, 32),
    ("decoder_layer3", 32 * 2, 24),
    ("decoder_layer2", 24 * 2, 16),
    ("decoder_layer1", 16 * 2, 32),
    ("decoder_layer0", 32 * 2, 32),
)

# Parameters trained at the full learning rate (the rest, the ImageNet-pretrained MobileNetV2,
# at lr / 100), selected by name as in the official training script.
_NEW_LAYER_TAGS = ("dconv", "pred", "index")


def _index_pool(x: Tensor, block: IndexBlock) -> tuple[Tensor, Tensor, Tensor]:
    # Weighted 2x2 sum-pooling: 4 * avg_pool of the index-weighted features.
    enc, dec = block(x)
    weighted = enc * x
    return weighted, 4.0 * F.avg_pool2d(weighted, 2, stride=2), dec


class IndexNet(nn.Module):
    """IndexNet Matting on the project's contract.

    Inputs are encoded inside ``forward`` as the official test does: the ImageNet-normalised
    image and the trimap divided by 255 (0, ~0.5, 1) as a 4th channel. The network regresses
    alpha without an output activation (``alpha_raw``, unbounded); the official test clips it
    to [0, 1] and keeps it only where the trimap is unknown, which ``forward`` does here
    (``alpha``).

    Args:
        pretrained_path: optional local file of the official code's ImageNet MobileNetV2
            (``features.N.conv.M`` names, every encoder tensor); the 4th (trimap) input
            channel of the first conv stays zero, as in the official code.
    """

    inputs: ClassVar[tuple[str, ...]] = ("image", "trimap")
    input_divisor: ClassVar[int] = 32

    def __init__(self, pretrained_path: str | None = None) -> None:
        super().__init__()
        self.layer0 = conv_bn(4, 32, 3)
        for i, (t, cin, cout, n) in enumerate(_STAGES, start=1):
            blocks = [InvertedResidual(cin if j == 0 else cout, cout, t) for j in range(n)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.index0 = IndexBlock(32)
        self.index2 = IndexBlock(24)
        self.index3 = IndexBlock(32)
        self.index4 = IndexBlock(64)
        self.index6 = IndexBlock(160)
        self.dconv_pp = ASPP(320, 160)
        for name, cin, cout in _DECODER:
            self.add_module(name, IndexedUpsampling(cin, cout, 5))
        self.pred = nn.Sequential(conv_bn(32, 1, 5), nn.Conv2d(1, 1, 5, padding=2, bias=False))
        self._init_weights()
        if pretrained_path is not None:
            self._load_pretrained(pretrained_path)

    def _init_weights(self) -> None:
        # The official model's last initialisation pass (it overrides the Kaiming init of its
        # decoder and ASPP modules): N(0, 2 / (k * k * out_channels)) for every conv, BN identity.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, (2.0 / n) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _load_pretrained(self, path: str) -> None:
        state = read_backbone_state(path)
        mapped = {}
        # MobileNetV2 numbering: features.0 is the stem, features.k (k >= 1)
        # the k-th inverted residual, counted across stages.
        stage_of = [(i, j) for i, (_, _, _, n) in enumerate(_STAGES, start=1) for j in range(n)]
        for key, value in state.items():
            parts = key.split(".")
            if parts[0] != "features" or not parts[1].isdigit():
                continue
            k = int(parts[1])
            if k == 0:
                name = "layer0." + ".".join(parts[2:])
            elif k <= len(stage_of):
                i, j = stage_of[k - 1]
                name = f"layer{i}.{j}." + ".".join(parts[2:])
            else:
                continue
            mapped[name] = value
        mapped = widen_input(mapped, "layer0.0.weight", self.layer0[0].weight)
        self.backbone_weights = load_backbone(
            self,
            mapped,
            path,
            "the official code's ImageNet MobileNetV2 (mobilenetv2_1.0-f2a8633.pth.tar: "
            "features.N.conv.M names; torchvision's MobileNetV2 has another block layout)",
            tuple(f"layer{i}" for i in range(len(_STAGES) + 1)),
        )

    def forward(self, image: Tensor, trimap: Tensor) -> dict[str, Tensor]:
        """Predict alpha.

        Args:
            image: ``(B, 3, H, W)`` ImageNet-normalised RGB; H, W multiples of 32.
            trimap: ``(B, 1, H, W)`` float in [0, 255].

        Returns:
            ``alpha``: ``(B, 1, H, W)`` in [0, 1], clipped and with the trimap's known regions
            imposed; ``alpha_raw``: the unbounded regression ``(B, 1, H, W)`` the loss uses.
        """
        h, w = image.shape[2:]
        if h % self.input_divisor or w % self.input_divisor:
            raise ValueError(
                f"IndexNet: input size {h}x{w} is not a multiple of {self.input_divisor}; "
                "pad the image and trimap first (the inference strategy does this)."
            )
        x = torch.cat([image, trimap.to(image.dtype) / 255.0], dim=1)
        l0, l0p, idx0 = _index_pool(self.layer0(x), self.index0)
        l1 = self.layer1(l0p)
        l2, l2p, idx2 = _index_pool(self.layer2(l1), self.index2)
        l3, l3p, idx3 = _index_pool(self.layer3(l2p), self.index3)
        l4, l4p, idx4 = _index_pool(self.layer4(l3p), self.index4)
        l5 = self.layer5(l4p)
        l6, l6p, idx6 = _index_pool(self.layer6(l5), self.index6)
        y = self.dconv_pp(self.layer7(l6p))
        y = self.decoder_layer6(y, l6, idx6)
        y = self.decoder_layer5(y, l5)
        y = self.decoder_layer4(y, l4, idx4)
        y = self.decoder_layer3(y, l3, idx3)
        y = self.decoder_layer2(y, l2, idx2)
        y = self.decoder_layer1(y, l1)
        y = self.decoder_layer0(y, l0, idx0)
        raw = self.pred(y)
        return {"alpha": trimap_guided(raw.clamp(0.0, 1.0), trimap), "alpha_raw": raw}

    def arch_config(self) -> dict[str, Any]:
        """Plain values that rebuild this architecture (none: the released configuration)."""
        return {}

    def param_groups(self) -> list[dict[str, Any]]:
        """The official two learning-rate groups: new layers (``dconv``, ``pred``, ``index``
        in the name) at the base lr, the pretrained MobileNetV2 at ``lr / 100``.

        Returns:
            ``[{"params": new, "lr_scale": 1.0}, {"params": pretrained, "lr_scale": 0.01}]``.
        """
        new, pretrained = [], []
        for name, p in self.named_parameters():
            (new if any(tag in name for tag in _NEW_LAYER_TAGS) else pretrained).append(p)
        return [{"params": new, "lr_scale": 1.0}, {"params": pretrained, "lr_scale": 0.01}]
