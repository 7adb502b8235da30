"""Semantic Human Matting (Chen et al., ACM MM 2018): T-Net + M-Net + fusion.

No official code was released; this follows the paper. T-Net is a PSPNet-50 (dilated
ResNet-50, output stride 8, pyramid pooling 1/2/3/6) predicting 3-class trimap logits;
M-Net is a DIM-like VGG-16 encoder-decoder with batch norm on the 6 channels image +
trimap probabilities, predicting the raw alpha ``alpha_r``; the fusion is
``alpha_p = F_s + U_s * alpha_r`` with ``F_s``, ``U_s`` the foreground and unknown
probabilities.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet50

from p3m_lightning.models.contract import check_divisible
from p3m_lightning.models.encoders import load_backbone, read_backbone_state
from p3m_lightning.models.trimap_guided import trimap_levels

__all__ = ["SHMNet"]


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class _TNet(nn.Module):
    """PSPNet-50 trimap network: ``(B, 3, H, W)`` -> ``(B, 3, H, W)`` logits."""

    def __init__(self, width: int, pretrained_path: str | None) -> None:
        super().__init__()
        r = resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
        if pretrained_path is not None:
            self.backbone_weights = load_backbone(
                r,
                read_backbone_state(pretrained_path),
                pretrained_path,
                "a torchvision ResNet-50 state dict",
                ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4"),
            )
        self.backbone = nn.Sequential(*list(r.children())[:-2])
        self.pool_sizes = (1, 2, 3, 6)
        self.ppm = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2048, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
            for _ in self.pool_sizes
        )
        self.head = nn.Sequential(_conv_bn(2048 + 4 * width, width), nn.Conv2d(width, 3, 1))

    def forward(self, x: Tensor) -> Tensor:
        f = self.backbone(x)
        size = f.shape[-2:]
        pyr = [f] + [
            F.interpolate(
                m(F.adaptive_avg_pool2d(f, s)), size, mode="bilinear", align_corners=False
            )
            for s, m in zip(self.pool_sizes, self.ppm, strict=True)
        ]
        logits = self.head(torch.cat(pyr, 1))
        return F.interpolate(logits, x.shape[-2:], mode="bilinear", align_corners=False)


class _MNet(nn.Module):
    """DIM-like VGG-16 (with BN) encoder-decoder: ``(B, 6, H, W)`` -> ``(B, 1, H, W)`` in [0, 1]."""

    def __init__(self, width_mult: float) -> None:
        super().__init__()
        chans = [int(c * width_mult) for c in (64, 128, 256, 512, 512)]
        reps = (2, 2, 3, 3, 3)
        stages, cin = [], 6
        for c, n in zip(chans, reps, strict=True):
            layers = []
            for _ in range(n):
                layers.append(_conv_bn(cin, c))
                cin = c
            stages.append(nn.Sequential(*layers))
        self.enc = nn.ModuleList(stages)
        dec, cin = [], chans[-1]
        for c in reversed(chans):
            dec.append(_conv_bn(cin, c))
            cin = c
        self.dec = nn.ModuleList(dec)
        self.out = nn.Conv2d(chans[0], 1, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.enc:
            x = F.max_pool2d(stage(x), 2)
        for layer in self.dec:
            x = layer(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        return torch.sigmoid(self.out(x))


class SHMNet(nn.Module):
    """SHM: trimap-free; ``image`` ``(B, 3, H, W)`` ImageNet-normalised, H and W multiples of 32.

    The paper trains in three stages, chosen by ``stage``:

    - ``tnet``: T-Net alone (its cross-entropy); M-Net is not run, and ``alpha`` is read off
      the trimap probabilities (foreground + half the unknown) so that the stage can be
      validated;
    - ``mnet``: M-Net alone on the ground-truth trimap: the network takes ``image`` and
      ``trimap`` (``(B, 1, H, W)`` in [0, 255]), whose one-hot classes replace T-Net's
      probabilities in M-Net's input and in the fusion; T-Net is not run;
    - ``joint`` (the model): both, end to end, the fusion of T-Net's probabilities and M-Net's
      alpha; start it from the two earlier stages' checkpoints (``MattingTask(init_from=...)``).

    Args:
        psp_width: pyramid-pooling branch width of T-Net (512 in PSPNet).
        mnet_width_mult: channel multiplier of M-Net's VGG-16 widths (1.0 in the paper).
        pretrained_path: optional local torchvision ResNet-50 state dict for T-Net.
        stage: ``joint``, ``tnet`` or ``mnet``.

    Returns (forward): ``alpha`` ``(B, 1, H, W)`` fused, in [0, 1]; ``trimap_logits``
    ``(B, 3, H, W)`` (0 background, 1 unknown, 2 foreground; not in stage ``mnet``);
    ``alpha_raw`` M-Net's alpha (not in stage ``tnet``).
    """

    inputs: ClassVar[tuple[str, ...]] = ("image",)
    input_divisor: ClassVar[int] = 32
    STAGES: ClassVar[tuple[str, ...]] = ("joint", "tnet", "mnet")

    def __init__(
        self,
        psp_width: int = 512,
        mnet_width_mult: float = 1.0,
        pretrained_path: str | None = None,
        stage: str = "joint",
    ) -> None:
        super().__init__()
        if stage not in self.STAGES:
            raise ValueError(f"SHMNet stage must be one of {self.STAGES}, got {stage!r}")
        self.psp_width = psp_width
        self.mnet_width_mult = mnet_width_mult
        self.stage = stage
        # The M-Net pre-training stage reads the ground-truth trimap.
        self.inputs = ("image", "trimap") if stage == "mnet" else ("image",)
        self.tnet = _TNet(psp_width, pretrained_path)
        self.mnet = _MNet(mnet_width_mult)

    def forward(self, image: Tensor, trimap: Tensor | None = None) -> dict[str, Tensor]:
        check_divisible(self, image)
        if self.stage == "mnet":
            if trimap is None:
                raise ValueError("SHMNet stage 'mnet' takes the ground-truth trimap")
            background, foreground = trimap_levels(trimap.float())
            unknown = ~(background | foreground)
            probs = torch.cat([background, unknown, foreground], 1).to(image.dtype)
            alpha_raw = self.mnet(torch.cat([image, probs], 1))
            alpha = (probs[:, 2:3] + probs[:, 1:2] * alpha_raw).clamp(0, 1)
            return {"alpha": alpha, "alpha_raw": alpha_raw}
        logits = self.tnet(image)
        probs = logits.softmax(1)
        if self.stage == "tnet":
            return {"alpha": probs[:, 2:3] + 0.5 * probs[:, 1:2], "trimap_logits": logits}
        alpha_raw = self.mnet(torch.cat([image, probs], 1))
        alpha = (probs[:, 2:3] + probs[:, 1:2] * alpha_raw).clamp(0, 1)
        return {"alpha": alpha, "trimap_logits": logits, "alpha_raw": alpha_raw}

    def arch_config(self) -> dict[str, Any]:
        return {
            "psp_width": self.psp_width,
            "mnet_width_mult": self.mnet_width_mult,
            "stage": self.stage,
        }
