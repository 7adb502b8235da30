"""The journal P3M-Net (Ma, Li, Zhang, Du, Tao, IJCV 2023) with a ViTAE-S or Swin-T encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from p3m_lightning.methods.p3m_journal.common import match_problems
from p3m_lightning.methods.p3m_journal.swin import SwinEncoder
from p3m_lightning.methods.p3m_journal.vitae import ViTAEEncoder
from p3m_lightning.methods.p3m_net.blocks import DBFI, SBFI, TFI, decoder_stage
from p3m_lightning.methods.p3m_net.network import check_input_size, encoder_decoder_groups
from p3m_lightning.models.safe_load import CheckpointError, read_checkpoint, tensor_state
from p3m_lightning.models.trimap_guided import fuse

ENCODERS: dict[str, type[nn.Module]] = {"vitae_s": ViTAEEncoder, "swin_t": SwinEncoder}


class P3MJournalNet(nn.Module):
    """P3M-Net of the journal version: a transformer encoder, a semantic and a matting decoder.

    The decoders, TFI, sBFI and dBFI are those of the conference P3M-Net; what differs is the
    encoder (ViTAE-S or Swin-T, with max-pool downsampling so the matting decoder still
    unpools) and the decoder widths: each stage's first convolution already halves the width
    (``c -> c/2 -> c/2 -> c/2``) where the ResNet-34 version halves in its last one, and the
    widths follow the encoder's (``c1..c32`` = 32/64/64/128/256/512 for ViTAE-S,
    48/96/96/192/384/768 for Swin-T). Module names equal the journal code's, so
    ``P3M-Net_ViTAE-S_trained_on_P3M-10k.pth`` loads (see :func:`load_published`).

    Args:
        backbone: ``"vitae_s"`` or ``"swin_t"``.
        backbone_config: keyword overrides for the encoder (``ViTAEEncoder`` /
            ``SwinEncoder``), e.g. reduced widths for tests; empty means the released size.
        pretrained_path: optional local file with the released ImageNet weights of the
            backbone (never downloaded).
    """

    inputs: ClassVar[tuple[str, ...]] = ("image",)
    input_divisor: ClassVar[int] = 32

    def __init__(
        self,
        backbone: str = "vitae_s",
        backbone_config: dict[str, Any] | None = None,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        if backbone not in ENCODERS:
            raise ValueError(
                f"unknown backbone {backbone!r} for the journal P3M-Net; "
                f"choose one of {sorted(ENCODERS)}"
            )
        self.backbone = backbone
        self.encoder = ENCODERS[backbone](**(backbone_config or {}))
        if pretrained_path is not None:
            self.encoder.load_imagenet(pretrained_path)
        self.decoder = JournalDecoder(self.encoder.out_channels)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predict trimap logits and alpha.

        Args:
            image: ``(B, 3, H, W)`` ImageNet-normalised RGB; H and W multiples of 32.

        Returns:
            ``alpha`` (the fusion, ``(B, 1, H, W)`` in [0, 1]) and, as the ResNet-34 P3M-Net:
            ``global_logits`` ``(B, 3, H, W)`` (background / transition / foreground),
            ``local`` ``(B, 1, H, W)`` in [0, 1], ``fusion`` (= ``alpha``) and the dBFI side
            logits ``side2``, ``side1``, ``side0`` ``(B, 3, H, W)``.
        """
        check_input_size(image.shape[-2], image.shape[-1])
        features, indices = self.encoder(image)
        return self.decoder(features, indices)

    def arch_config(self) -> dict[str, Any]:
        """Plain values that rebuild this architecture (``P3MJournalNet(**arch_config())``)."""
        return {"backbone": self.backbone, "backbone_config": self.encoder.arch_config()}

    def param_groups(self) -> list[dict[str, Any]]:
        """Two optimiser groups: ``decoder`` (everything but the encoder) and ``encoder``."""
        return encoder_decoder_groups(self)


class JournalDecoder(nn.Module):
    """The two decoders and their integration modules, for encoder widths ``c1..c32``."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        c1, c2, c4, c8, c16, c32 = widths
        self.decoder4_g = decoder_stage([c32, c16, c16, c16], upsample=True)
        self.decoder3_g = decoder_stage([c16, c8, c8, c8], upsample=True)
        self.decoder2_g = decoder_stage([c8, c4, c4, c4], upsample=True)
        self.decoder1_g = decoder_stage([c4, c2, c2, c2], upsample=True)
        self.decoder0_g = decoder_stage([c2, c1, c1], upsample=True, head=c1)
        self.decoder_final_g = nn.Conv2d(c1, 3, 3, padding=1)
        self.decoder4_l = decoder_stage([c32, c16, c16, c16], upsample=False)
        self.decoder3_l = decoder_stage([c16, c8, c8, c8], upsample=False)
        self.decoder2_l = decoder_stage([c8, c4, c4, c4], upsample=False)
        self.decoder1_l = decoder_stage([c4, c2, c2, c2], upsample=False)
        self.decoder0_l = decoder_stage([c2, c1, c1], upsample=False)
        self.decoder_final_l = nn.Conv2d(c1, 1, 3, padding=1)
        self.tfi_3 = TFI(c16)
        self.tfi_2 = TFI(c8)
        self.tfi_1 = TFI(c4)
        self.tfi_0 = TFI(c2)
        self.sbfi_2 = SBFI(c8, 8, c1)
        self.sbfi_1 = SBFI(c4, 4, c1)
        self.sbfi_0 = SBFI(c2, 2, c1)
        self.dbfi_2 = DBFI(c8, 4, c32)
        self.dbfi_1 = DBFI(c4, 8, c32)
        self.dbfi_0 = DBFI(c2, 16, c32)

    def forward(
        self, features: list[torch.Tensor], indices: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """``features`` at strides 1..32 and pool ``indices`` of levels 0-4 -> the outputs."""
        e0, e0p, e1, e2, e3, e4 = features

        def up(x: torch.Tensor, level: int) -> torch.Tensor:
            return F.max_unpool2d(x.contiguous(), indices[level], kernel_size=2, stride=2)

        d4g = self.decoder4_g(e4)
        d3g = self.decoder3_g(d4g)
        d2g, side2 = self.dbfi_2(d3g, e4)
        d2g = self.decoder2_g(d2g)
        d1g, side1 = self.dbfi_1(d2g, e4)
        d1g = self.decoder1_g(d1g)
        d0g, side0 = self.dbfi_0(d1g, e4)
        global_logits = self.decoder_final_g(self.decoder0_g(d0g))

        d3l = self.tfi_3(d4g, up(self.decoder4_l(e4), 4), e3)
        d2l = self.sbfi_2(self.tfi_2(d3g, up(self.decoder3_l(d3l), 3), e2), e0)
        d1l = self.sbfi_1(self.tfi_1(d2g, up(self.decoder2_l(d2l), 2), e1), e0)
        d0l = self.sbfi_0(self.tfi_0(d1g, up(self.decoder1_l(d1l), 1), e0p), e0)
        local = torch.sigmoid(self.decoder_final_l(up(self.decoder0_l(d0l), 0)))
        alpha = fuse(global_logits, local)
        return {
            "alpha": alpha,
            "global_logits": global_logits,
            "local": local,
            "fusion": alpha,
            "side2": side2,
            "side1": side1,
            "side0": side0,
        }


def published_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The model state of a journal P3M-Net checkpoint (``{"state_dict": ...}`` as released,
    or a bare state dict), ``module.`` prefixes stripped and ``attn_mask`` buffers dropped."""
    return drop_attention_masks(tensor_state(read_checkpoint(path), path))


def drop_attention_masks(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` less the Swin ``attn_mask`` buffers the journal code saves (rebuilt here)."""
    return {k: v for k, v in state.items() if not k.endswith(".attn_mask")}


def load_published(path: str | Path, backbone: str = "vitae_s") -> P3MJournalNet:
    """Build a full-size journal P3M-Net and load a checkpoint of the journal code's layout,
    e.g. the released ``P3M-Net_ViTAE-S_trained_on_P3M-10k.pth``.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, unsafe to unpickle, or not this architecture (the
            message names the missing, unexpected and mis-shaped keys).
    """
    model = P3MJournalNet(backbone)
    state = published_state(path)
    problems = match_problems(model, state)
    if problems:
        raise CheckpointError(
            f"{path}: does not match the journal P3M-Net ({backbone}); " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=True)
    return model
