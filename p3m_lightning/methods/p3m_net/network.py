"""P3M-Net (Li, Ma, Zhang, Tao, ACM MM 2021) with a swappable encoder."""

from __future__ import annotations

from collections.abc import Callable, Collection
from functools import partial
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


BAND_ROWS = 132
"""Most rows of the stride-2 maps per band of a banded ``("local",)`` pass (``P3MNet.forward``):
the full-size pass of a 1080p photo (1056 rows, 528 at stride 2) runs in 4 bands of 132."""

BAND_HALO = 6
"""Stride-2 rows of context a band of the matting decoder's last stage reads on either side:
as far as its layers reach (the bilinear upsampling of its semantic input, 1 row; the 3x3
convolutions of TFI and sBFI, 2; the two of ``decoder0_l``, 2; the unpooling to stride 1 with
the last 3x3 convolution, 1), so each band's kept rows equal the whole map's. Even, so that
slabs start on a stride-4 row."""

HEAD_ROWS = 32
"""Stride-2 rows per chunk of the last unpooling and convolution (at stride 1) in a band."""


def _unpool(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """2x max-unpooling of ``x`` by a 3x3 / stride-2 pool's ``indices``.

    Overlapping 3x3 pools give duplicate indices; NCHW unpooling resolves them in a fixed order
    (as the reference), channels-last unpooling races on them. Outside tracing, aten's op is
    called directly: ``F.max_unpool2d``'s size check imports sympy on its first use (about
    0.2 s of a process's start); a trace needs ``F.max_unpool2d``, which records the output
    size as computed from ``x`` (an export with dynamic sizes).
    """
    x = x.contiguous()
    if torch.jit.is_tracing():
        return F.max_unpool2d(x, indices, kernel_size=2, stride=2)
    return torch.ops.aten.max_unpool2d(x, indices, [2 * x.shape[-2], 2 * x.shape[-1]])


def _unpool_level(indices: list[torch.Tensor], x: torch.Tensor, level: int) -> torch.Tensor:
    """``_unpool`` of a stride-``2^(level+1)`` map by its pool's indices, ``indices[level]``."""
    return _unpool(x, indices[level])


def _unpool_rows(
    x: torch.Tensor, indices: torch.Tensor, row0: int, width: int, total_height: int
) -> torch.Tensor:
    """The rows of the whole map's 2x unpooling that a slab of its pooled rows writes to.

    Args:
        x: ``h`` consecutive pooled rows of the whole pooled map, from row ``row0 / 2``.
        indices: their pool indices (int32 or int64), flat in the whole unpooled map.
        row0: twice the slab's first pooled row.
        width, total_height: the whole unpooled map's size.

    Returns:
        Unpooled rows ``[max(0, row0 - 1), min(total_height, row0 + 2 h + 1))``: a pooled row
        ``p`` writes to rows ``2p - 1 .. 2p + 1``. Rows whose writers are all in the slab
        equal the whole map's: the same writes, in the same order.
    """
    lo, hi = max(0, row0 - 1), min(total_height, row0 + 2 * x.shape[-2] + 1)
    shifted = indices.to(torch.int64, copy=True).sub_(lo * width)
    # aten's op: F.max_unpool2d refuses an output more than one stride larger than 2x.
    return torch.ops.aten.max_unpool2d(x.contiguous(), shifted, [hi - lo, width])


def _bands(total: int, rows: int) -> tuple[int, list[int]]:
    """Bands of equal height, at most ``rows`` and a multiple of 4, covering ``[0, total)``:
    the height and each band's first row (the last band ends at ``total`` and may overlap
    the one before)."""
    count = -(-total // rows)
    height = -(-total // count)
    height += -height % 4
    return height, [min(k * height, total - height) for k in range(count)]


def _inside(start: int, size: int, total: int) -> int:
    """``start`` moved the least so that ``[start, start + size)`` lies in ``[0, total)``."""
    return max(0, min(start, total - size))


def _empty_rows(like: torch.Tensor, height: int) -> torch.Tensor:
    """An uninitialised map like ``like`` (dtype, memory format) with ``height`` rows."""
    channels_last = like.dim() == 4 and like.stride(1) == 1 and like.shape[1] > 1
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    shape = (like.shape[0], like.shape[1], height, like.shape[3])
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=fmt)


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
        self,
        image: torch.Tensor,
        outputs: Collection[str] | None = None,
        band_rows: int | None = None,
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
            band_rows: rows of the stride-2 maps per band in a banded ``("local",)`` pass
                (a multiple of 4); ``None``: ``BAND_ROWS``; 0: never banded. A pass for
                ``("local",)`` alone, without gradients, with the ResNet-34-mp encoder and
                more stride-2 rows than one band computes its stride-1 and stride-2 maps band
                by band (``_local_in_bands``): bit for bit the same map, in about a third of
                the memory.

        Returns:
            The requested maps by name (``OUTPUTS``), plus ``alpha`` (the model contract's
            final alpha, the very ``fusion`` tensor) when ``fusion`` is requested; every map
            has the input's height and width.

        Raises:
            ValueError: an unknown output name, H/W not multiples of 32, or ``band_rows``
                not a multiple of 4.
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
        check_input_size(image.shape[-2], image.shape[-1])
        rows = BAND_ROWS if band_rows is None else band_rows
        if rows % 4:
            raise ValueError(f"band_rows must be a multiple of 4, got {rows}")
        if wanted == {"local"} and self._can_band(image, rows):
            return {"local": self._local_in_bands(image, rows)}
        need_global = bool(wanted & {"global_logits", "fusion"})
        need_local = bool(wanted & {"local", "fusion"})
        features, indices = self.encoder(image)
        e0, e0p, e1, e2, e3, e4 = features
        del features
        # The SBFIs read e0 only through their features of it: taking them now frees e0.
        e0_features = self._e0_features(e0) if need_local else {}
        del e0

        def up(x: torch.Tensor, level: int) -> torch.Tensor:
            if indices:
                return _unpool(x, indices[level])
            return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

        d1g, d1l, side2, side1 = self._decode_to_stride4(
            e1, e2, e3, e4, e0_features, up, need_local, wanted
        )
        del e1, e2, e3
        d1g = self.decoder1_g(d1g)
        local = None
        if need_local:
            d0 = self._matting_stride2(
                d1g, up(self.decoder1_l(d1l), 1), self.tfi_0.transform(e0p), e0_features[2]
            )
            local = self._head(up(d0, 0))
            del d0
        del d1l, e0p, e0_features
        global_logits = side0 = None
        if need_global or "side0" in wanted:
            d0g, side0 = self.dbfi_0(d1g, e4, side="side0" in wanted)
            global_logits = self.decoder0_g(d0g) if need_global else None
            del d0g
        del d1g, e4
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

    def _e0_features(self, e0: torch.Tensor) -> dict[int, torch.Tensor]:
        """What each SBFI takes of e0 (``SBFI.e0_feature``), by the SBFI's stride (2, 4, 8)."""
        return {
            2: self.sbfi_0.e0_feature(e0),
            4: self.sbfi_1.e0_feature(e0),
            8: self.sbfi_2.e0_feature(e0),
        }

    def _decode_to_stride4(
        self,
        e1: torch.Tensor,
        e2: torch.Tensor,
        e3: torch.Tensor,
        e4: torch.Tensor,
        e0_features: dict[int, torch.Tensor],
        up: Callable[[torch.Tensor, int], torch.Tensor],
        need_local: bool,
        wanted: set[str],
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Both decoders from e4 down to stride 4.

        Returns:
            The semantic feature entering ``decoder1_g``, the matting feature entering
            ``decoder1_l`` (``None`` without ``need_local``), and the side logits ``side2``,
            ``side1`` where ``wanted``.
        """
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
            d2l = self.sbfi_2.merge(
                self.tfi_2(d3g, up(self.decoder3_l(d3l), 3), e2), e0_features[8]
            )
        del d3l, e2
        d2g, side2 = self.dbfi_2(d3g, e4, side="side2" in wanted)
        del d3g
        d2g = self.decoder2_g(d2g)
        d1l = None
        if need_local:
            d1l = self.sbfi_1.merge(
                self.tfi_1(d2g, up(self.decoder2_l(d2l), 2), e1), e0_features[4]
            )
        del d2l, e1
        d1g, side1 = self.dbfi_1(d2g, e4, side="side1" in wanted)
        return d1g, d1l, side2, side1

    def _matting_stride2(
        self,
        d1g: torch.Tensor,
        matting: torch.Tensor,
        e0p_feature: torch.Tensor,
        e0_feature: torch.Tensor,
    ) -> torch.Tensor:
        """The matting decoder's last stage at stride 2, up to ``decoder0_l``.

        Args:
            d1g: the semantic feature after ``decoder1_g``.
            matting: the matting feature, unpooled (or upsampled) to stride 2.
            e0p_feature: the pooled e0 through ``tfi_0.transform``.
            e0_feature: ``sbfi_0.e0_feature(e0)``.
        """
        d0l = self.tfi_0.merge(d1g, matting, e0p_feature)
        # Dropped as soon as used (a caller passing temporaries frees them here).
        del d1g, matting, e0p_feature
        d0l = self.sbfi_0.merge(d0l, e0_feature)
        del e0_feature
        return self.decoder0_l(d0l)

    def _head(self, full: torch.Tensor) -> torch.Tensor:
        """``local`` from the matting feature unpooled to stride 1 (NCHW)."""
        # With the model's channels-last weight the convolution would first copy this
        # largest map of the network (64 x H x W) to channels-last.
        head = self.decoder_final_l
        return torch.sigmoid(F.conv2d(full, head.weight.contiguous(), head.bias, padding=1))

    def _can_band(self, image: torch.Tensor, rows: int) -> bool:
        """Whether a ``("local",)`` pass on ``image`` may run in bands of ``rows`` rows."""
        return (
            rows > 0
            and image.shape[-2] // 2 > rows
            and isinstance(self.encoder, ResNet34MP)
            and not torch.is_grad_enabled()
            # A traced or compiled graph would bake in the number of bands.
            and not torch.jit.is_tracing()
            and not torch.jit.is_scripting()
            and not torch.compiler.is_compiling()
        )

    def _local_in_bands(self, image: torch.Tensor, rows: int) -> torch.Tensor:
        """``local`` computed with the stride-1 and stride-2 maps in bands of ``rows`` rows.

        At 1056 x 1600 the stride-1 e0 and the unpooled last matting feature (64 channels
        each, 430 MB in float32), the int64 unpooling indices of e0 (220 MB) and the many
        64-channel stride-2 maps (110 MB each) are the memory of the pass. Here e0 exists
        one band at a time (``_stem_in_bands``), and the matting decoder's last stage runs band
        by band on stride-2 slabs with ``BAND_HALO`` rows of context on either side: every
        convolution, unpooling and upsampling gives each kept row exactly the value of the
        whole map (the same kernels on the same inputs), which the tests check bit for bit.
        """
        e0p, e0p_feature, id0, e0_features = self._stem_in_bands(image, rows)
        deeper, indices = self.encoder.body(e0p)
        n, _, h2, w2 = e0p.shape
        del e0p
        e1, e2, e3, e4 = deeper
        del deeper
        id1 = indices[0]
        indices = [id0, *indices]
        up = partial(_unpool_level, indices)
        d1g, d1l, _, _ = self._decode_to_stride4(e1, e2, e3, e4, e0_features, up, True, {"local"})
        e0_feature = e0_features[2]
        del e1, e2, e3, e4, e0_features, indices, up
        # Both stride-4 inputs of the last stage are brought to stride 2 slab by slab.
        d1g = self.decoder1_g[:-1](d1g)
        upsample = self.decoder1_g[-1]
        d1l = self.decoder1_l(d1l)
        local = torch.empty((n, 1, 2 * h2, 2 * w2), dtype=d1l.dtype, device=d1l.device)
        band, tops = _bands(h2, rows)
        # Every slab has the same height (a band and its context, slid inside the map at the
        # borders), so each layer runs at one shape: oneDNN builds its kernels once.
        height = min(h2, band + 2 * BAND_HALO)
        chunk, chunk_tops = _bands(band, HEAD_ROWS)
        for top in tops:
            s0 = _inside(top - BAND_HALO, height, h2)
            q0, q1 = s0 // 2, (s0 + height) // 2
            first = max(0, s0 - 1)
            d0 = self._matting_stride2(
                upsample(d1g[:, :, q0:q1]),
                _unpool_rows(d1l[:, :, q0:q1], id1[:, :, q0:q1], s0, w2, h2)[
                    :, :, s0 - first : s0 + height - first
                ],
                e0p_feature[:, :, s0 : s0 + height],
                e0_feature[:, :, s0 : s0 + height],
            )
            # Stride 1 in chunks, each with a row of context on either side (the reach of
            # the unpooling and of the 3x3 convolution).
            for c0 in (top + t for t in chunk_tops):
                a = _inside(c0 - 1, chunk + 2, h2)
                full = _unpool_rows(
                    d0[:, :, a - s0 : a - s0 + chunk + 2],
                    id0[:, :, a : a + chunk + 2],
                    2 * a,
                    2 * w2,
                    2 * h2,
                )
                first = max(0, 2 * a - 1)
                local[:, :, 2 * c0 : 2 * (c0 + chunk)] = self._head(full)[
                    :, :, 2 * c0 - first : 2 * (c0 + chunk) - first
                ]
                del full
            del d0
        return local

    def _stem_in_bands(
        self, image: torch.Tensor, rows: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[int, torch.Tensor]]:
        """The pooled e0, its ``tfi_0.transform``, its pool indices (int32: half the memory)
        and the SBFIs' e0 features, with e0 computed band by band.

        A band of pooled rows ``[top, top + band)`` needs e0 rows ``2 top - 1 .. 2 (top +
        band) - 1`` (3x3 pooling windows, stride 2, padding 1), which need 3 more image rows
        on either side (the 7x7 ``conv1``). ``top`` is a multiple of 4, so the stride-4 and
        stride-8 features of a band are whole rows of the whole map's.
        """
        encoder = self.encoder
        h, w = image.shape[-2:]
        h2 = h // 2
        maps: dict[str, torch.Tensor] = {}
        band, tops = _bands(h2, rows)
        for top in tops:
            # e0 rows [r0, r0 + 2 band + 2): the band's pooling windows and a row more,
            # above (r0 even) or, for the first band, below; from image rows with conv1's
            # 3 rows of context. Every band has the same shapes (see _local_in_bands).
            r0 = _inside(2 * top - 2, 2 * band + 2, h)
            i0 = _inside(r0 - 3, 2 * band + 8, h)
            e0 = encoder.stem(image[:, :, i0 : i0 + 2 * band + 8])
            e0 = e0[:, :, r0 - i0 : r0 - i0 + 2 * band + 2]
            pooled, index = encoder.pool(e0)
            skip = top - r0 // 2
            pooled, index = pooled[:, :, skip : skip + band], index[:, :, skip : skip + band]
            index += r0 * w  # flat in the whole e0
            features = self._e0_features(e0[:, :, 2 * top - r0 : 2 * top - r0 + 2 * band])
            del e0
            # (name, stride-2 rows per row of the map, the band's rows)
            results = [
                ("e0p", 1, pooled),
                ("e0p_feature", 1, self.tfi_0.transform(pooled)),
                ("id0", 1, index.to(torch.int32)),
                *((f"e0_{s}", s // 2, x) for s, x in features.items()),
            ]
            del pooled, index, features
            for name, step, x in results:
                if name not in maps:
                    maps[name] = _empty_rows(x, h2 // step)
                maps[name][:, :, top // step : (top + band) // step] = x
            del results
        e0_features = {s: maps[f"e0_{s}"] for s in (2, 4, 8)}
        return maps["e0p"], maps["e0p_feature"], maps["id0"], e0_features

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
