"""P3M-CP at the feature level (P3M-FCP): paste a public face's encoder features into a portrait's.

The encoder first runs on the aligned source images (`p3m_lightning.data.copy_paste`); then the
network runs on the training images while forward hooks on the chosen encoder layers replace each
layer's output inside the target face mask, downsampled to the layer's resolution, by the
source's output of the same layer. Everything downstream (deeper layers, skip connections,
decoders) sees the pasted features. Source features are detached by default (the journal's
``DETACH``): the gradient reaches the encoder only through the training image.

Layers are named relative to the encoder (``layer1``, ``layer3`` for ``ResNet34MP``,
``model.layers_1`` for a timm encoder, ...), so any encoder of the P3M-Net family works.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def downsample_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A ``(B, 1, H, W)`` 0/1 mask at ``size``: 1 wherever the cell holds any mask pixel.

    Max pooling rather than nearest sampling, so a small face still marks the cells it touches
    at the coarsest layers.
    """
    return F.adaptive_max_pool2d(mask.float(), size)


class FeatureCopyPaste:
    """Run a network with source features pasted into chosen encoder layers.

    Args:
        layers: encoder sub-module names whose outputs are pasted (the journal's ``LAYER``).
        detach: compute the source features without gradient (the journal's ``DETACH``).

    Raises:
        ValueError: an empty ``layers``.
    """

    def __init__(self, layers: Sequence[str], detach: bool = True) -> None:
        if not layers:
            raise ValueError("FeatureCopyPaste needs at least one encoder layer name")
        self.layers = tuple(layers)
        self.detach = detach

    def _modules(self, encoder: nn.Module) -> dict[str, nn.Module]:
        named = dict(encoder.named_modules())
        unknown = [name for name in self.layers if name not in named]
        if unknown:
            children = ", ".join(name for name, _ in encoder.named_children())
            raise ValueError(
                f"unknown encoder layers {unknown} for {type(encoder).__name__}; its top-level "
                f"modules are: {children}"
            )
        return {name: named[name] for name in self.layers}

    def source_features(self, encoder: nn.Module, source: torch.Tensor) -> dict[str, torch.Tensor]:
        """The chosen layers' outputs for ``source`` ``(B, 3, H, W)`` (normalised images)."""
        captured: dict[str, torch.Tensor] = {}

        def capture(name: str) -> Callable[[nn.Module, Any, torch.Tensor], None]:
            def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
                captured[name] = output

            return hook

        handles = [m.register_forward_hook(capture(n)) for n, m in self._modules(encoder).items()]
        try:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.detach):
                encoder(source)
        finally:
            for handle in handles:
                handle.remove()
        return captured

    def __call__(
        self,
        net: nn.Module,
        image: torch.Tensor,
        source: torch.Tensor,
        mask: torch.Tensor,
    ) -> Any:
        """``net(image)`` with the source's features pasted inside ``mask``.

        Args:
            net: a network of the P3M-Net family (it has an ``encoder``).
            image: ``(B, 3, H, W)`` normalised training images.
            source: ``(B, 3, H, W)`` normalised aligned source images.
            mask: ``(B, 1, H, W)`` target face masks in {0, 1}; a sample whose mask is all zero
                (no paste drawn for it) runs unchanged.

        Returns:
            Whatever ``net(image)`` returns.
        """
        encoder = net.encoder
        features = self.source_features(encoder, source)

        def paste(name: str) -> Callable[[nn.Module, Any, torch.Tensor], torch.Tensor]:
            def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
                inside = downsample_mask(mask, tuple(output.shape[-2:])).to(output.dtype)
                return output * (1 - inside) + features[name].to(output.dtype) * inside

            return hook

        # Prepended: the paste belongs to the layer's computation, so any other hook (loggers,
        # feature probes) sees the pasted features.
        handles = [
            m.register_forward_hook(paste(n), prepend=True)
            for n, m in self._modules(encoder).items()
        ]
        try:
            return net(image)
        finally:
            for handle in handles:
                handle.remove()
