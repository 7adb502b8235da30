"""How a matting network runs on one whole image of any size: the shared pieces.

An inference strategy is a small component called as ``strategy(net, inputs) -> (H, W)
alpha``, where ``inputs`` holds what the network takes (its ``inputs`` attribute) for one image:

- ``image``: ``(1, 3, H, W)`` ImageNet-normalised RGB, any H and W;
- ``trimap``: ``(1, 1, H, W)`` float in [0, 255] (trimap-based models);
- ``bg``: ``(1, 3, H, W)`` background plate, normalised like the image (background-based).

This module holds the base class, the resampling and size rules every method uses, and the two
generic strategies (``Resize``, ``TrimapGuided``). A method's own test-time procedure lives in
its folder (``p3m_lightning/methods/<method>/inference.py``); ``p3m_lightning.strategies`` is the
allow-list a name in a config or a checkpoint is looked up in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m_lightning.models.trimap_guided import trimap_guided
from p3m_lightning.normalization import normalize, rgb8
from p3m_lightning.resampling import skimage_resize

MAX_SIDE = 1600
"""Largest side the network sees (the P3M/GFM reference's MAX_SIZE_H / MAX_SIZE_W)."""

__all__ = [
    "MAX_SIDE",
    "InferenceStrategy",
    "Resize",
    "TrimapGuided",
    "call_net",
    "capped_inputs",
    "check_inputs",
    "check_quantize",
    "check_resampling",
    "input_divisor",
    "network_size",
    "quantize",
    "resample_levels",
    "resample_map",
    "resample_photo",
    "resize",
    "resized_inputs",
]

RESAMPLING = ("skimage_0.14", "skimage_0.17", "torch")
"""How a strategy resizes: as the official P3M-Net / journal scripts (scikit-image 0.14's
``resize`` on the 8-bit photo), as GFM's (scikit-image 0.17's), or torch's antialiased
bilinear on the normalised tensor (``torch``: 10x faster, not the published mattes)."""

QUANTIZE: tuple[str | None, ...] = (None, "floor", "round")
"""How an official script turns its float matte into the 8-bit PNG its figures were computed
from: not at all (``None``), ``(a * 255).astype(uint8)`` (``floor``) or rounded (``round``)."""


def check_resampling(resampling: str) -> str:
    """``resampling`` if it is one of ``RESAMPLING``.

    Raises:
        ValueError: naming the choices.
    """
    if resampling not in RESAMPLING:
        raise ValueError(f"resampling must be one of {RESAMPLING}, got {resampling!r}")
    return resampling


def resample_photo(image: Tensor, size: tuple[int, int], resampling: str) -> Tensor:
    """The network's normalised input at ``size``.

    With scikit-image resampling, as the official scripts form it: the 8-bit photo resized,
    times 255 (float64), cast to float32, divided by 255 and normalised.

    Args:
        image: ``(1, 3, H, W)`` ImageNet-normalised.
        size: ``(height, width)`` the network sees.
        resampling: one of ``RESAMPLING``.

    Returns:
        ``(1, 3, height, width)`` float32 on ``image``'s device.
    """
    if check_resampling(resampling) == "torch":
        return resize(image, size)
    scaled = skimage_resize(rgb8(image), size, resampling.split("_")[1]) * 255.0
    photo = torch.from_numpy(scaled.astype(np.float32)).permute(2, 0, 1)[None] / 255.0
    return normalize(photo).to(image.device)


def resample_map(x: Tensor, size: tuple[int, int], resampling: str) -> Tensor:
    """A ``(1, 1, h, w)`` output map (alpha, local, focus) resized to ``size``, float32."""
    if check_resampling(resampling) == "torch":
        return resize(x.float(), size)
    out = skimage_resize(x[0, 0].float().cpu().numpy(), size, resampling.split("_")[1])
    return torch.from_numpy(out.astype(np.float32))[None, None].to(x.device)


def resample_levels(
    levels: Tensor, size: tuple[int, int], resampling: str
) -> tuple[Tensor, Tensor]:
    """A predicted 0 / 128 / 255 trimap resized bilinearly to ``size``, as the P3M-Net and GFM
    scripts merge it: known where the resized map is exactly 0 or 255, ``map / 255`` there.

    With scikit-image resampling the comparisons are the reference's exact float64 ones; with
    torch's, values within 1e-3 of 0 or 255 count (bilinear weights sum to 1 up to rounding).

    Args:
        levels: ``(1, 1, h, w)`` uint8 with values 0, 128 (or another level) and 255.
        size: ``(height, width)``.
        resampling: one of ``RESAMPLING``.

    Returns:
        ``known`` (bool) and ``levels / 255`` (float32), each ``(height, width)`` on ``levels``'
        device.
    """
    if check_resampling(resampling) == "torch":
        resized = resize(levels.float(), size)[0, 0]
        resized = torch.where(resized > 254.999, 255.0, torch.where(resized < 0.001, 0.0, resized))
        return (resized == 0.0) | (resized == 255.0), resized / 255.0
    scaled = skimage_resize(levels[0, 0].cpu().numpy(), size, resampling.split("_")[1]) * 255.0
    known = torch.from_numpy((scaled == 255.0) | (scaled == 0.0))
    alpha = torch.from_numpy((scaled / 255.0).astype(np.float32))
    return known.to(levels.device), alpha.to(levels.device)


def check_quantize(mode: str | None) -> str | None:
    """``mode`` if it is one of ``QUANTIZE``.

    Raises:
        ValueError: naming the choices.
    """
    if mode not in QUANTIZE:
        raise ValueError(f"quantize must be one of {QUANTIZE}, got {mode!r}")
    return mode


def quantize(alpha: Tensor, mode: str | None) -> Tensor:
    """``alpha`` in [0, 1] as an official script's 8-bit PNG has it (``QUANTIZE``), read back
    as ``level / 255``; ``None`` leaves it as it is.

    Raises:
        ValueError: an unknown mode.
    """
    if check_quantize(mode) is None:
        return alpha
    scaled = alpha.double() * 255.0
    levels = torch.floor(scaled) if mode == "floor" else torch.round(scaled)
    return (levels.clamp(0, 255) / 255.0).to(alpha.dtype)


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``(B, C, H, W)``, antialiased when shrinking."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def network_size(
    height: int, width: int, ratio: float, max_side: int = MAX_SIDE, divisor: int = 32
) -> tuple[int, int]:
    """Size the network sees: ``ratio`` of the image, rounded down to ``divisor``, capped at
    ``max_side``.

    The cap is itself rounded down to a multiple of ``divisor`` (the network needs one), so
    ``max_side=1000`` caps at 992 for 32. Images too small for one step at this ratio get
    ``divisor`` rather than the reference's crash on a zero size.
    """
    cap = max(divisor, max_side - max_side % divisor)

    def side(n: int) -> int:
        scaled = int(n * ratio)
        return max(divisor, min(cap, scaled - scaled % divisor))

    return side(height), side(width)


def input_divisor(net: nn.Module) -> int:
    """The multiple the network needs its height and width to be (32 unless it says)."""
    return int(getattr(net, "input_divisor", 32))


def check_inputs(net: nn.Module, inputs: Mapping[str, Tensor]) -> None:
    """Raise ``ValueError`` naming the inputs ``net`` takes that ``inputs`` lacks."""
    names = getattr(net, "inputs", ("image",))
    missing = [k for k in names if k not in inputs]
    if missing:
        raise ValueError(
            f"{type(net).__name__} takes {', '.join(names)}; missing: {', '.join(missing)}"
        )


def call_net(net: nn.Module, inputs: Mapping[str, Tensor], **kwargs: Any) -> Any:
    """``net`` on its inputs, in the order of its ``inputs`` attribute."""
    return net(*(inputs[k] for k in getattr(net, "inputs", ("image",))), **kwargs)


def resized_inputs(
    inputs: Mapping[str, Tensor], size: tuple[int, int], image_mode: str = "bilinear"
) -> dict[str, Tensor]:
    """Every input at ``size``: the trimap by nearest neighbour (it keeps its three levels),
    images bilinearly (antialiased when shrinking) or bicubically."""
    out = {}
    for k, v in inputs.items():
        if k == "trimap":
            out[k] = F.interpolate(v, size=size, mode="nearest")
        elif image_mode == "bicubic":
            out[k] = F.interpolate(v, size=size, mode="bicubic", align_corners=False)
        else:
            out[k] = resize(v, size)
    return out


class InferenceStrategy:
    """Base class: ``strategy(net, inputs)`` returns the ``(H, W)`` float32 alpha in [0, 1].

    Args:
        max_side: cap on each side the network sees.
    """

    name: ClassVar[str] = ""

    def __init__(self, max_side: int = MAX_SIDE) -> None:
        self.max_side = int(max_side)

    def __call__(self, net: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The strategy's own arguments (``max_side`` aside), for checkpoints."""
        return {}

    def spec(self) -> str | dict[str, Any]:
        """What a checkpoint records: the name, or ``{"name", **params}`` with the parameters
        that differ from the defaults; ``build_strategy`` rebuilds either."""
        defaults = type(self)().params()
        changed = {k: v for k, v in self.params().items() if defaults.get(k) != v}
        return {"name": self.name, **changed} if changed else self.name

    def __repr__(self) -> str:
        params = "".join(f"{k}={v!r}, " for k, v in self.params().items())
        return f"{type(self).__name__}({params}max_side={self.max_side})"


class Resize(InferenceStrategy):
    """One pass at ``scale`` of the image, ``alpha`` resized back (P3M-Net's ``RESIZE``).

    Each side is ``int(side * scale)`` rounded down to the network's ``input_divisor`` and
    capped at ``max_side``. The image is resized by ``resampling``: by default as the official
    P3M-Net test script does (scikit-image 0.14 on the 8-bit photo, the alpha back the same
    way), which with ``scale=0.5`` and P3M-Net is the published protocol; GFM's script resizes
    with scikit-image 0.17. A trimap input is resized to the nearest neighbour (it keeps its
    three levels), a background plate like the image.

    Args:
        scale: ratio of the image size the network sees (0.5 published, 1.0 whole image).
        resampling: one of ``RESAMPLING``.
        quantize: the official script's 8-bit matte (``QUANTIZE``), or None.
        max_side: cap on each side the network sees.
    """

    name = "resize"

    def __init__(
        self,
        scale: float = 0.5,
        resampling: str = "skimage_0.14",
        quantize: str | None = None,
        max_side: int = MAX_SIDE,
    ) -> None:
        super().__init__(max_side)
        if not 0 < scale <= 4:
            raise ValueError(f"scale must be in (0, 4], got {scale}")
        self.scale = float(scale)
        self.resampling = check_resampling(resampling)
        self.quantize = check_quantize(quantize)

    def __call__(self, net: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
        check_inputs(net, inputs)
        h, w = inputs["image"].shape[-2:]
        size = network_size(h, w, self.scale, self.max_side, input_divisor(net))
        run = {
            k: F.interpolate(v, size=size, mode="nearest")
            if k == "trimap"
            else resample_photo(v, size, self.resampling)
            for k, v in inputs.items()
        }
        # A network that computes only the maps asked for (P3M-Net) skips its side heads.
        kwargs = {"outputs": ("alpha",)} if getattr(net, "selects_outputs", False) else {}
        alpha = call_net(net, run, **kwargs)["alpha"].float()
        alpha = resample_map(alpha, (h, w), self.resampling)[0, 0].clamp(0.0, 1.0)
        return quantize(alpha, self.quantize)

    def params(self) -> dict[str, Any]:
        return {"scale": self.scale, "resampling": self.resampling, "quantize": self.quantize}


def capped_inputs(inputs: Mapping[str, Tensor], max_side: int) -> dict[str, Tensor]:
    """``inputs`` resized (``resized_inputs``) so that no side exceeds ``max_side``; a copy of
    them when none does."""
    h, w = inputs["image"].shape[-2:]
    if max(h, w) <= max_side:
        return dict(inputs)
    ratio = max_side / max(h, w)
    return resized_inputs(inputs, (max(1, round(h * ratio)), max(1, round(w * ratio))))


class TrimapGuided(InferenceStrategy):
    """Trimap-based methods' protocol: the whole image at full resolution, known regions from
    the trimap.

    Image and trimap are brought to the network's ``input_divisor``, then the alpha is brought
    back, set to 0 / 1 where the trimap says background / foreground (``guide``) and, last,
    quantised as the official script's PNG (``quantize``):

    - ``align="pad"`` (mmagic's DIM; GCA's ``GCAPad``; our choice for AlphaGAN): reflection
      padding on the bottom and right, the alpha cropped back;
    - ``align="resize"``: each side resized up to the next multiple (image bicubic, trimap
      nearest), the alpha resized back bilinearly. No method's default: IndexNet's and FBA's
      own procedures (``IndexNetResize``, ``FBAResize``) are what their scripts do.

    An image with a side over ``max_side`` is first run at a size capped to it (the official
    scripts have no cap; the default 1600 leaves P3M-500-P untouched).

    Args:
        align: ``pad`` or ``resize``.
        quantize: ``None`` (the float alpha), ``"floor"`` or ``"round"`` (``QUANTIZE``).
        max_side: cap on each side the network sees.
    """

    name = "trimap_guided"

    def __init__(
        self, align: str = "pad", quantize: str | None = None, max_side: int = MAX_SIDE
    ) -> None:
        super().__init__(max_side)
        if align not in ("pad", "resize"):
            raise ValueError(f"align must be 'pad' or 'resize', got {align!r}")
        self.align = align
        self.quantize = check_quantize(quantize)

    def params(self) -> dict[str, Any]:
        return {"align": self.align, "quantize": self.quantize}

    def guide(self, alpha: Tensor, trimap: Tensor) -> Tensor:
        """``alpha`` with the trimap's known regions imposed (0 / 255 levels)."""
        return trimap_guided(alpha, trimap)

    def __call__(self, net: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
        check_inputs(net, inputs)
        if "trimap" not in inputs:
            raise ValueError("the trimap-guided strategy needs a trimap")
        image, trimap = inputs["image"], inputs["trimap"]
        h, w = image.shape[-2:]
        run = capped_inputs(inputs, self.max_side)
        rh, rw = run["image"].shape[-2:]
        d = input_divisor(net)
        if self.align == "resize":
            size = (-(-rh // d) * d, -(-rw // d) * d)
            alpha = call_net(net, resized_inputs(run, size, "bicubic"))["alpha"].float()
            alpha = F.interpolate(alpha, size=(rh, rw), mode="bilinear", align_corners=False)
        else:
            pad = (0, (-rw) % d, 0, (-rh) % d)
            if any(pad):
                # Reflection needs the pad to be smaller than the side; replicate otherwise.
                mode = "reflect" if pad[1] < rw and pad[3] < rh else "replicate"
                run = {k: F.pad(v, pad, mode=mode) for k, v in run.items()}
            alpha = call_net(net, run)["alpha"].float()[..., :rh, :rw]
        if (rh, rw) != (h, w):
            alpha = resize(alpha, (h, w))
        alpha = self.guide(alpha.clamp(0.0, 1.0), trimap.float())
        return quantize(alpha, self.quantize)[0, 0]
