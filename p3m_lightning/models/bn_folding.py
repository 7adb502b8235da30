"""Inference-only folding of BatchNorm into the preceding convolution."""

from __future__ import annotations

import torch
from torch import nn

# Parent-module attribute pairs (conv, BN) used by ResNet blocks and the P3M integration blocks.
_NAMED_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"))


def _foldable(conv: object, bn: object) -> bool:
    # Exactly BatchNorm2d: subclasses such as timm's BatchNormAct2d also apply an activation.
    return isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d


@torch.no_grad()
def fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode ``bn`` into the ``conv`` before it, in place.

    The arithmetic of ``torch.nn.utils.fusion.fuse_conv_bn_weights``, operation for operation
    (so the same values to the bit), without its copy of the convolution: the weight is
    scaled where it lies, which leaves no freed copies of the weights behind in the
    process's heap (about 200 MB of resident memory for P3M-Net).
    """
    rsqrt = torch.rsqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(rsqrt)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(rsqrt)
    conv.weight.mul_((gamma * rsqrt).reshape(-1, 1, 1, 1))
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.bias = nn.Parameter(
        (conv_bias - bn.running_mean) * rsqrt * gamma + beta, conv.weight.requires_grad
    )


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
            for (_, conv), (bn_name, bn) in zip(children, children[1:], strict=False):
                if _foldable(conv, bn):
                    fold_bn_into_conv(conv, bn)
                    module._modules[bn_name] = nn.Identity()
        for conv_name, bn_name in _NAMED_PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if _foldable(conv, bn):
                fold_bn_into_conv(conv, bn)
                setattr(module, bn_name, nn.Identity())
    return model
