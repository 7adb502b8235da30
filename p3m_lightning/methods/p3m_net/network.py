"""P3M-Net (Li, Ma, Zhang, Tao, ACM MM 2021) with a swappable encoder."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from p3m_lightning.methods.p3m_net.blocks import DBFI, SBFI, TFI, decoder_stage
from p3m_lightning.models.encoders import ResNet34MP, build_encoder
from p3m_lightning.models.trimap_guided import fuse

OUTPUTS = ("global_logits", "local", "fusion", "side2", "side1", "side0")
"""Names ``P3MNet.forward(image, outputs=...)`` accepts, in the reference's return order.

- ``global_logits``: ``(B, 3, H, W)`` raw logits of the semantic decoder (0 background,
  1 transition, 2 foreground).
- ``local``: ``(B, 1, H, W)`` alpha of the matting decoder, in [0, 1].
- ``fusion``: ``(B, 1, H, W)`` fused alpha in [0, 1]: ``local`` where the semantic argmax is
  "transition", 1 where "foreground", 0 where "background"; also returned as ``alpha``.
- ``side2``, ``side1``, ``side0``: ``(B, 3, H, W)`` logits of the dBFI side heads at strides
  8, 4 and 2.
"""


def check_input_size(height: int, width: int) -> None:
    """Raise ``ValueError`` unless both sides are positive multiples of 32."""
    if height % 32 == 0 and width % 32 == 0 and height > 0 and width > 0:
        return

    def options(n: int) -> str:
        lo, hi = (n // 32) * 32, (n // 32 + 1) * 32
        return f"{hi}" if lo == 0 else f"{lo} or {hi}"

    raise ValueError(
        f"P3M-Net needs height and width that are multiples of 32, got {height}x{width}; "
        f"nearest valid height: {options(height)}, width: {options(width)}. "
        "Resize or pad the image (the test strategies in p3m_lightning.inference do this)."
    )


class P3MNet(nn.Module):
    """P3M-Net: a shared encoder, a semantic decoder with dBFI, a matting decoder with TFI/sBFI.

    Decoder widths follow the encoder's ``out_channels`` ``(c1, c2, c4, c8, c16, c32)`` (by
    stride); with ``ResNet34MP`` this is exactly the published network (39.5 M parameters)
    and its checkpoint names, less the ``resnet.``/``encoderN.`` naming that
    ``p3m_lightning.models.checkpoint`` translates.

    Args:
        encoder: an encoder from ``p3m_lightning.models.encoders`` (default ``ResNet34MP()``).
    """

    inputs: ClassVar[tuple[str, ...]] = ("image",)
    input_divisor: ClassVar[int] = 32
    # forward(image, outputs=...) computes only the requested maps (the test strategies use it).
    selects_outputs: ClassVar[bool] = True

    def __init__(self, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = encoder if encoder is not None else ResNet34MP()
        c1, c2, c4, c8, c16, c32 = self.encoder.out_channels
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
        self.decoder4_g = decoder_stage([c32, c32, c32, c16], upsample=True)
        self.decoder3_g = decoder_stage([c16, c16, c16, c8], upsample=True)
        self.decoder2_g = decoder_stage([c8, c8, c8, c4], upsample=True)
        self.decoder1_g = decoder_stage([c4, c4, c4, c2], upsample=True)
        self.decoder0_g = decoder_stage([c2, c2, c2], upsample=True, head=3)
        self.decoder4_l = decoder_stage([c32, c32, c32, c16], upsample=False)
        self.decoder3_l = decoder_stage([c16, c16, c16, c8], upsample=False)
        self.decoder2_l = decoder_stage([c8, c8, c8, c4], upsample=False)
        self.decoder1_l = decoder_stage([c4, c4, c4, c2], upsample=False)
        self.decoder0_l = decoder_stage([c2, c2, c1], upsample=False)
        self.decoder_final_l = nn.Conv2d(c1, 1, 3, padding=1)

    def forward(
        self, image: torch.Tensor, outputs: Collection[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Predict trimap logits and alpha.

        Args:
            image: ``(B, 3, H, W)`` ImageNet-normalised RGB; H and W multiples of 32.
            outputs: the maps to compute (names of ``OUTPUTS``, or ``alpha`` for
                ``fusion``); ``None`` for all.
                Only the layers these need run; the others are not returned. The
                matting decoder reads the semantic decoder's features up to stride 2, so
                ``("local",)`` still runs it there but skips its last stage (full size) and
                every side head; ``("global_logits",)`` skips the whole matting decoder.
                Requested maps equal those of a full forward.

        Returns:
            The requested maps by name (``OUTPUTS``), plus ``alpha`` (the model contract's
            final alpha, the very ``fusion`` tensor) when ``fusion`` is requested; every map
            has the input's height and width.

        Raises:
            ValueError: an unknown output name, or H/W not multiples of 32.
        """
        wanted = set(OUTPUTS if outputs is None else outputs)
        if "alpha" in wanted:
            # The model contract's name of the final alpha.
            wanted = (wanted - {"alpha"}) | {"fusion"}
        unknown = wanted - set(OUTPUTS)
        if unknown or not wanted:
            raise ValueError(
                f"unknown P3M-Net outputs {sorted(unknown)}; choose from {', '.join(OUTPUTS)}"
            )
        need_global = bool(wanted & {"global_logits", "fusion"})
        need_local = bool(wanted & {"local", "fusion"})
        check_input_size(image.shape[-2], image.shape[-1])
        features, indices = self.encoder(image)
        e0, e0p, e1, e2, e3, e4 = features
        del features

        def up(x: torch.Tensor, level: int) -> torch.Tensor:
            if indices:
                # Overlapping 3x3 pools give duplicate indices; NCHW unpooling resolves them in
                # a fixed order (as the reference), channels-last unpooling races on them.
                return F.max_unpool2d(x.contiguous(), indices[level], kernel_size=2, stride=2)
            return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

        # The two decoders advance level by level and each map is freed after its last use,
        # which bounds the memory of large inputs; the computation is the published one.
        # Semantic stages 4..1 feed the matting decoder's TFIs and so always run.
        d4g = self.decoder4_g(e4)
        d3l = self.tfi_3(d4g, up(self.decoder4_l(e4), 4), e3) if need_local else None
        del e3
        d3g = self.decoder3_g(d4g)
        del d4g
        d2l = None
        if need_local:
            d2l = self.sbfi_2(self.tfi_2(d3g, up(self.decoder3_l(d3l), 3), e2), e0)
        del d3l, e2
        d2g, side2 = self.dbfi_2(d3g, e4, side="side2" in wanted)
        del d3g
        d2g = self.decoder2_g(d2g)
        d1l = None
        if need_local:
            d1l = self.sbfi_1(self.tfi_1(d2g, up(self.decoder2_l(d2l), 2), e1), e0)
        del d2l, e1
        d1g, side1 = self.dbfi_1(d2g, e4, side="side1" in wanted)
        del d2g
        d1g = self.decoder1_g(d1g)
        d0l = None
        if need_local:
            d0l = self.sbfi_0(self.tfi_0(d1g, up(self.decoder1_l(d1l), 1), e0p), e0)
        del d1l, e0p, e0
        global_logits = side0 = None
        if need_global or "side0" in wanted:
            d0g, side0 = self.dbfi_0(d1g, e4, side="side0" in wanted)
            global_logits = self.decoder0_g(d0g) if need_global else None
            del d0g
        del d1g, e4
        local = None
        if need_local:
            full = up(self.decoder0_l(d0l), 0)
            # The unpooled map is NCHW; with the model's channels-last weight the convolution
            # would first copy this largest map of the network (64 x H x W) to channels-last.
            head = self.decoder_final_l
            local = torch.sigmoid(F.conv2d(full, head.weight.contiguous(), head.bias, padding=1))
            del full
        del d0l
        maps = {
            "global_logits": global_logits,
            "local": local,
            "fusion": fuse(global_logits, local) if "fusion" in wanted else None,
            "side2": side2,
            "side1": side1,
            "side0": side0,
        }
        out = {name: maps[name] for name in OUTPUTS if name in wanted}
        if "fusion" in out:
            out["alpha"] = out["fusion"]
        return out

    def arch_config(self) -> dict[str, Any]:
        """Plain values that rebuild this architecture (``build_p3mnet``)."""
        return {"encoder": self.encoder.arch_config()}

    def param_groups(self) -> list[dict[str, Any]]:
        """Two optimiser groups: ``decoder`` (everything but the encoder) and ``encoder``."""
        return encoder_decoder_groups(self)


def encoder_decoder_groups(net: nn.Module) -> list[dict[str, Any]]:
    """Trainable parameters of ``net`` in a ``decoder`` and an ``encoder`` group (by name)."""
    encoder = [p for n, p in net.named_parameters() if p.requires_grad and n.startswith("encoder.")]
    others = [
        p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("encoder.")
    ]
    return [{"params": others, "name": "decoder"}, {"params": encoder, "name": "encoder"}]


def build_p3mnet(config: dict[str, Any]) -> P3MNet:
    """Rebuild a P3M-Net from ``P3MNet.arch_config()`` values (weights not loaded)."""
    return P3MNet(build_encoder(dict(config.get("encoder", {"type": "resnet34_mp"}))))
