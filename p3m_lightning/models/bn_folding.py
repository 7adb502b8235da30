"""Inference-only folding of BatchNorm into the preceding convolution."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# Parent-module attribute pairs (conv, BN) used by ResNet blocks and the P3M integration blocks.
_NAMED_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"))


def _foldable(conv: object, bn: object) -> bool:
    # Exactly BatchNorm2d: subclasses such as timm's BatchNormAct2d also apply an activation.
    return isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every ``Conv2d -> BatchNorm2d`` pair of an eval-mode model into one convolution.

    Saves the BatchNorm passes (about 10 % of P3M-Net's CPU inference time); outputs stay
    within the conformance tolerance of the published model. The folded model is for
    inference only: it cannot be trained or saved in the published format. Works in place.

    Raises:
        ValueError: if the model is in training mode.
    """
    if model.training:
        raise ValueError("fuse_conv_bn needs a model in eval mode (call model.eval() first)")
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            children = list(module._modules.items())
            for (conv_name, conv), (bn_name, bn) in zip(children, children[1:], strict=False):
                if _foldable(conv, bn):
                    module._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
                    module._modules[bn_name] = nn.Identity()
        for conv_name, bn_name in _NAMED_PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if _foldable(conv, bn):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
    return model
