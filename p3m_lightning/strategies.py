"""Inference strategies: how a matting network is run on one whole image of any size.

A strategy is a small component called as ``strategy(net, inputs) -> (H, W) alpha``, where
``inputs`` holds what the network takes (its ``inputs`` attribute) for one image:

- ``image``: ``(1, 3, H, W)`` ImageNet-normalised RGB, any H and W;
- ``trimap``: ``(1, 1, H, W)`` float in [0, 255] (trimap-based models);
- ``bg``: ``(1, 3, H, W)`` background plate, normalised like the image (background-based).

Validation and test in ``MattingTask``, ``eval.py``, ``predict.py`` and ``Matter`` all run the
model through one of these, so a method's published test protocol is written once. A model
config chooses its strategy by name (``strategy: resize``) or as a Hydra component
(``strategy: {_target_: p3m_lightning.strategies.Resize, scale: 0.5}``); checkpoints record
the name, and ``STRATEGIES`` is the allow-list a name is looked up in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from p3m_lightning.inference import MAX_SIDE, Strategy, predict_alpha, resize
from p3m_lightning.models.trimap_guided import trimap_guided

__all__ = [
    "STRATEGIES",
    "GFMHybrid",
    "InferenceStrategy",
    "MODNetResize",
    "P3MHybrid",
    "Resize",
    "TrimapGuided",
    "build_strategy",
]


def _divisor(net: nn.Module) -> int:
    return int(getattr(net, "input_divisor", 32))


def _check_inputs(net: nn.Module, inputs: Mapping[str, Tensor]) -> None:
    missing = [k for k in getattr(net, "inputs", ("image",)) if k not in inputs]
    if missing:
        raise ValueError(
            f"{type(net).__name__} takes {', '.join(getattr(net, 'inputs', ('image',)))}; "
            f"missing: {', '.join(missing)}"
        )


def _call(net: nn.Module, inputs: Mapping[str, Tensor]) -> Any:
    return net(*(inputs[k] for k in getattr(net, "inputs", ("image",))))


def _scaled_side(n: int, ratio: float, divisor: int, max_side: int) -> int:
    cap = max(divisor, max_side - max_side % divisor)
    scaled = int(n * ratio)
    return max(divisor, min(cap, scaled - scaled % divisor))


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
        """What a checkpoint records: the name, or ``{"name", **params}`` where the
        parameters differ from the defaults; ``build_strategy`` rebuilds either."""
        defaults = type(self)().params()
        params = self.params()
        return self.name if params == defaults else {"name": self.name, **params}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_side={self.max_side})"


class Resize(InferenceStrategy):
    """One pass at ``scale`` of the image, ``alpha`` resized back (P3M-Net's ``RESIZE``).

    Every input is resized to the network size: images bilinearly (antialiased when
    shrinking), a trimap to the nearest neighbour so it keeps its three levels. Each side is
    rounded down to the network's ``input_divisor`` and capped at ``max_side``. With
    ``scale=0.5`` and P3M-Net this is exactly the published protocol.

    Args:
        scale: ratio of the image size the network sees (0.5 published, 1.0 whole image).
        max_side: cap on each side the network sees.
    """

    name = "resize"

    def __init__(self, scale: float = 0.5, max_side: int = MAX_SIDE) -> None:
        super().__init__(max_side)
        if not 0 < scale <= 4:
            raise ValueError(f"scale must be in (0, 4], got {scale}")
        self.scale = float(scale)

    def __call__(self, net: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
        _check_inputs(net, inputs)
        image = inputs["image"]
        h, w = image.shape[-2:]
        if getattr(net, "selects_outputs", False) and self.scale == 0.5:
            return predict_alpha(net, image, Strategy.RESIZE, self.max_side)
        d = _divisor(net)
        size = (
            _scaled_side(h, self.scale, d, self.max_side),
            _scaled_side(w, self.scale, d, self.max_side),
        )
        alpha = _call(net, _resized(inputs, size))["alpha"].float()
        return resize(alpha, (h, w))[0, 0].clamp(0.0, 1.0)

    def params(self) -> dict[str, Any]:
        return {"scale": self.scale}

    def __repr__(self) -> str:
        return f"Resize(scale={self.scale}, max_side={self.max_side})"


class P3MHybrid(InferenceStrategy):
    """P3M-Net's ``HYBRID``: the trimap of a half-size pass, the matting decoder's alpha of a
    full-size pass (see ``p3m_lightning.inference.predict_alpha``).

    For the P3M-Net family (ResNet-34, timm, Swin-T, ViTAE-S encoders): the network returns
    ``global_logits`` and ``local``.
    """

    name = "hybrid"

    def __call__(self, net: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
        _check_inputs(net, inputs)
        return predict_alpha(net, inputs["image"], Strategy.HYBRID, self.max_side)


class GFMHybrid(InferenceStrategy):
    """GFM's ``HYBRID``: glance at 1/3, focus at 1/2 of the image, merged by its RoSTa."""

    name = "gfm_hybrid"

    def __call__(self, net: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
        from p3m_lightning.models.gfm.inference import gfm_hybrid_alpha

        _check_inputs(net, inputs)
        return gfm_hybrid_alpha(net, inputs["image"], max_side=self.max_side)


class MODNetResize(InferenceStrategy):
    """MODNet's demo protocol: short side to ``ref_size`` (area resize), one pass, back.

    Args:
        ref_size: target short side (512 in the official demo).
        max_side: unused by the official protocol (kept for a uniform signature).
    """

    name = "modnet"

    def __init__(self, ref_size: int = 512, max_side: int = MAX_SIDE) -> None:
        super().__init__(max_side)
        self.ref_size = int(ref_size)

    def params(self) -> dict[str, Any]:
        return {"ref_size": self.ref_size}

    def __call__(self, net: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
        from p3m_lightning.models.modnet.inference import modnet_alpha

        _check_inputs(net, inputs)
        return modnet_alpha(net, inputs["image"], self.ref_size)


class TrimapGuided(InferenceStrategy):
    """Trimap-based methods' protocol: the whole image at full resolution, known regions from
    the trimap.

    Image and trimap are brought to the network's ``input_divisor`` as the method's official
    test script does, then the alpha is brought back and set to 0 / 1 where the trimap says
    background / foreground:

    - ``align="pad"`` (GCA; mmagic's DIM): reflection padding on the bottom and right, the
      alpha cropped back;
    - ``align="resize"`` (IndexNet, FBA): each side resized up to the next multiple (image
      bicubic, trimap nearest; FBA's script uses Lanczos for the image, which torch lacks),
      the alpha resized back bilinearly.

    An image with a side over ``max_side`` is first run at a size capped to it (the official
    scripts have no cap; the default 1600 leaves P3M-500-P untouched).

    Args:
        align: ``pad`` or ``resize``.
        max_side: cap on each side the network sees.
    """

    name = "trimap_guided"

    def __init__(self, align: str = "pad", max_side: int = MAX_SIDE) -> None:
        super().__init__(max_side)
        if align not in ("pad", "resize"):
            raise ValueError(f"align must be 'pad' or 'resize', got {align!r}")
        self.align = align

    def params(self) -> dict[str, Any]:
        return {"align": self.align}

    def __call__(self, net: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
        _check_inputs(net, inputs)
        if "trimap" not in inputs:
            raise ValueError("the trimap-guided strategy needs a trimap")
        image, trimap = inputs["image"], inputs["trimap"]
        h, w = image.shape[-2:]
        run = dict(inputs)
        if max(h, w) > self.max_side:
            ratio = self.max_side / max(h, w)
            run = _resized(inputs, (max(1, round(h * ratio)), max(1, round(w * ratio))))
        rh, rw = run["image"].shape[-2:]
        d = _divisor(net)
        if self.align == "resize":
            size = (-(-rh // d) * d, -(-rw // d) * d)
            alpha = _call(net, _resized(run, size, "bicubic"))["alpha"].float()
            alpha = F.interpolate(alpha, size=(rh, rw), mode="bilinear", align_corners=False)
        else:
            pad = (0, (-rw) % d, 0, (-rh) % d)
            if any(pad):
                # Reflection needs the pad to be smaller than the side; replicate otherwise.
                mode = "reflect" if pad[1] < rw and pad[3] < rh else "replicate"
                run = {k: F.pad(v, pad, mode=mode) for k, v in run.items()}
            alpha = _call(net, run)["alpha"].float()[..., :rh, :rw]
        if (rh, rw) != (h, w):
            alpha = resize(alpha, (h, w))
        return trimap_guided(alpha.clamp(0.0, 1.0), trimap.float())[0, 0]

    def __repr__(self) -> str:
        return f"TrimapGuided(align={self.align!r}, max_side={self.max_side})"


def _resized(
    inputs: Mapping[str, Tensor], size: tuple[int, int], image_mode: str = "bilinear"
) -> dict[str, Tensor]:
    """Every input at ``size``: the trimap by nearest neighbour (it keeps its three levels)."""
    out = {}
    for k, v in inputs.items():
        if k == "trimap":
            out[k] = F.interpolate(v, size=size, mode="nearest")
        elif image_mode == "bicubic":
            out[k] = F.interpolate(v, size=size, mode="bicubic", align_corners=False)
        else:
            out[k] = resize(v, size)
    return out


STRATEGIES: dict[str, type[InferenceStrategy]] = {
    cls.name: cls for cls in (Resize, P3MHybrid, GFMHybrid, MODNetResize, TrimapGuided)
}
"""The strategies a name (in a config or a checkpoint) may ask for."""


def build_strategy(
    spec: str | Mapping[str, Any] | InferenceStrategy | Strategy, max_side: int | None = None
) -> InferenceStrategy:
    """A strategy from its name in ``STRATEGIES``, a ``{"name", **params}`` record (what a
    checkpoint stores, ``InferenceStrategy.spec``) or an already built component.

    Args:
        spec: a name (``resize``, ``hybrid``, ``gfm_hybrid``, ``modnet``, ``trimap_guided``),
            a record with the strategy's parameters, or an ``InferenceStrategy``.
        max_side: cap on each side the network sees (``None``: the default).

    Raises:
        ValueError: an unknown name or parameter, naming the known ones.
    """
    if isinstance(spec, InferenceStrategy):
        if max_side is not None:
            spec.max_side = int(max_side)
        return spec
    params: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        params = {k: v for k, v in spec.items() if k != "name"}
        spec = str(spec.get("name"))
    name = spec.value if isinstance(spec, Strategy) else str(spec)
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    cls = STRATEGIES[name]
    known = set(cls().params())
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"strategy {name}: unknown parameters {unknown}; known: {sorted(known)}")
    return cls(**params, max_side=MAX_SIDE if max_side is None else int(max_side))
