"""FBA Matting (Forte & Pitie, 2020): a dilated ResNet-50 (group norm + weight
standardisation) with a PPM decoder predicting alpha, foreground and background, followed by
the closed-form F, B, alpha fusion.

Module names follow the official ``MattingModule(fba_encoder(), fba_decoder())`` so that the
released ``FBA.pth`` (a plain state dict) loads with ``load_state_dict``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m_lightning.methods.fba.blocks import (
    DilatedResNet50,
    WSConv2d,
    gn,
    trimap_distance_features,
    two_channel_trimap,
)
from p3m_lightning.models.contract import check_divisible
from p3m_lightning.models.encoders import load_backbone, read_backbone_state, widen_input
from p3m_lightning.models.trimap_guided import trimap_guided
from p3m_lightning.normalization import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["FBANet", "fba_fusion"]

_POOL_SCALES = (1, 2, 3, 6)


def fba_fusion(
    alpha: Tensor, image: Tensor, fg: Tensor, bg: Tensor, la: float = 0.1
) -> tuple[Tensor, Tensor, Tensor]:
    """One step of the paper's F, B, alpha fusion: F and B are corrected towards the
    compositing equation given alpha, then alpha is re-estimated from F and B with a prior
    weight ``la`` on the network's alpha.

    Args:
        alpha: ``(B, 1, H, W)`` in [0, 1].
        image: ``(B, 3, H, W)`` RGB in [0, 1].
        fg: ``(B, 3, H, W)`` in [0, 1].
        bg: ``(B, 3, H, W)`` in [0, 1].
        la: weight of the alpha prior (0.1 officially).

    Returns:
        Fused ``(alpha, fg, bg)``, each clipped to [0, 1].
    """
    a = alpha
    new_fg = a * image + (1 - a**2) * fg - a * (1 - a) * bg
    # As in the official code, B is corrected with the already corrected (unclipped) F.
    new_bg = (1 - a) * image + (2 * a - a**2) * bg - a * (1 - a) * new_fg
    new_fg, new_bg = new_fg.clamp(0, 1), new_bg.clamp(0, 1)
    diff = new_fg - new_bg
    num = a * la + ((image - new_bg) * diff).sum(dim=1, keepdim=True)
    den = (diff * diff).sum(dim=1, keepdim=True) + la
    return (num / den).clamp(0, 1), new_fg, new_bg


def _ws_gn_leaky(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    return [WSConv2d(cin, cout, kernel, padding=kernel // 2, bias=True), gn(cout), nn.LeakyReLU()]


class FBADecoder(nn.Module):
    """Pyramid pooling on the 1/8 features, three upsampling stages with skips (1/4, 1/2,
    full size), and a plain-conv head to 7 channels (alpha, F, B)."""

    def __init__(self) -> None:
        super().__init__()
        self.ppm = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), *_ws_gn_leaky(2048, 256, 1))
            for s in _POOL_SCALES
        )
        self.conv_up1 = nn.Sequential(
            *_ws_gn_leaky(2048 + 256 * len(_POOL_SCALES), 256, 3), *_ws_gn_leaky(256, 256, 3)
        )
        self.conv_up2 = nn.Sequential(*_ws_gn_leaky(256 + 256, 256, 3))
        self.conv_up3 = nn.Sequential(*_ws_gn_leaky(256 + 64, 64, 3))
        self.conv_up4 = nn.Sequential(
            nn.Conv2d(64 + 3 + 3 + 2, 32, 3, padding=1),
            nn.LeakyReLU(),
            nn.Conv2d(32, 16, 3, padding=1),
            nn.LeakyReLU(),
            nn.Conv2d(16, 7, 1),
        )

    def forward(self, feats: list[Tensor], image: Tensor, two_chan: Tensor) -> Tensor:
        """Decode encoder features to ``(B, 7, H, W)`` logits-like maps (alpha, F, B)."""
        top = feats[-1]
        pooled = [
            F.interpolate(p(top), size=top.shape[2:], mode="bilinear", align_corners=False)
            for p in self.ppm
        ]
        x = self.conv_up1(torch.cat([top, *pooled], dim=1))
        x = _up2(x)
        x = self.conv_up2(torch.cat([x, feats[-4]], dim=1))
        x = _up2(x)
        x = self.conv_up3(torch.cat([x, feats[-5]], dim=1))
        x = _up2(x)
        return self.conv_up4(torch.cat([x, feats[-6][:, :3], image, two_chan], dim=1))


def _up2(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class FBANet(nn.Module):
    """FBA Matting on the project's contract.

    ``forward`` builds the official 11-channel input from the project's tensors: the
    ImageNet-normalised image, the 6 trimap distance features (``trimap_distance_features``)
    and the 2-channel trimap; the decoder also sees the [0, 1] RGB image. Alpha is the
    network's channel 0 clipped to [0, 1] (no sigmoid), F and B are sigmoids, then one
    ``fba_fusion`` step, all as in the official network. The official test script then sets
    alpha to 0 / 1 on the trimap's background / foreground, and F (B) to the image where
    alpha is 1 (0); ``forward`` does the same for ``alpha``, ``fg``, ``bg`` and also returns
    the decoder's maps before the fusion (``*_raw``) for the loss.

    Args:
        pretrained_path: optional local ImageNet ResNet-50 (GN + WS) state dict with
            torchvision-style names (``conv1.weight``, ``layerN...``); the 8 extra input
            channels of ``conv1`` start at zero, as in the official code.
    """

    inputs: ClassVar[tuple[str, ...]] = ("image", "trimap")
    input_divisor: ClassVar[int] = 8

    def __init__(self, pretrained_path: str | None = None) -> None:
        super().__init__()
        self.encoder = DilatedResNet50(in_channels=11)
        self.decoder = FBADecoder()
        with torch.no_grad():
            self.encoder.conv1.weight[:, 3:] = 0
        if pretrained_path is not None:
            self._load_pretrained(pretrained_path)

    def _load_pretrained(self, path: str) -> None:
        state = widen_input(read_backbone_state(path), "conv1.weight", self.encoder.conv1.weight)
        self.encoder.backbone_weights = load_backbone(
            self.encoder,
            state,
            path,
            "a GN+WS ResNet-50 state dict with torchvision-style names (conv1.weight, ...)",
        )

    def forward(self, image: Tensor, trimap: Tensor) -> dict[str, Tensor]:
        """Predict alpha, foreground and background.

        Args:
            image: ``(B, 3, H, W)`` ImageNet-normalised RGB; H, W multiples of 8.
            trimap: ``(B, 1, H, W)`` float in [0, 255].

        Returns:
            ``alpha`` ``(B, 1, H, W)``, ``fg`` and ``bg`` ``(B, 3, H, W)`` (RGB in [0, 1], not
            normalised) after the fusion and the official test-time trimap guidance, and
            ``alpha_raw``, ``fg_raw``, ``bg_raw``: the decoder's maps before the fusion
            (alpha clipped, F and B sigmoids), all in [0, 1], which the loss supervises.
        """
        mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        rgb = image * std + mean
        two_chan = two_channel_trimap(trimap).to(image.dtype)
        clicks = trimap_distance_features(trimap).to(image.dtype)
        # The maps the loss supervises: before the fusion, which is inference-only
        # (maintainer, MarcoForte/FBA_Matting issue #38).
        alpha_raw, fg_raw, bg_raw = self.decoded(image, rgb, two_chan, clicks)
        alpha, fg, bg = fba_fusion(alpha_raw, rgb, fg_raw, bg_raw)
        final = trimap_guided(alpha, trimap)
        return {
            "alpha": final,
            "fg": torch.where(final == 1, rgb, fg),
            "bg": torch.where(final == 0, rgb, bg),
            "alpha_raw": alpha_raw,
            "fg_raw": fg_raw,
            "bg_raw": bg_raw,
        }

    def decoded(
        self, image: Tensor, rgb: Tensor, two_chan: Tensor, clicks: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The decoder's maps before the fusion, on inputs already encoded (the official
        model's own signature): alpha clipped to [0, 1], F and B sigmoids.

        Args:
            image: ``(B, 3, H, W)`` ImageNet-normalised RGB; H, W multiples of 8.
            rgb: ``(B, 3, H, W)`` the same image, RGB in [0, 1].
            two_chan: ``(B, 2, H, W)`` (background, foreground) trimap channels.
            clicks: ``(B, 6, H, W)`` the trimap distance features.

        Returns:
            ``(alpha, fg, bg)``: ``(B, 1, H, W)``, ``(B, 3, H, W)`` twice, in [0, 1].
        """
        check_divisible(self, image)
        feats = self.encoder(torch.cat([image, clicks, two_chan], dim=1))
        out = self.decoder(feats, rgb, two_chan)
        return out[:, :1].clamp(0, 1), torch.sigmoid(out[:, 1:4]), torch.sigmoid(out[:, 4:7])

    def from_encodings(
        self, image: Tensor, rgb: Tensor, two_chan: Tensor, clicks: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The fused ``(alpha, fg, bg)`` on inputs already encoded (``decoded``, then one
        ``fba_fusion`` step).

        The official test script encodes its trimap after a Lanczos resize (soft values,
        ``FBAResize``), which ``forward``'s encodings of a level trimap cannot express.
        """
        alpha, fg, bg = self.decoded(image, rgb, two_chan, clicks)
        return fba_fusion(alpha, rgb, fg, bg)

    def arch_config(self) -> dict[str, Any]:
        """Plain values that rebuild this architecture (none: the released configuration)."""
        return {}
