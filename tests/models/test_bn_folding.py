"""BatchNorm folding: the same weights as PyTorch's own fusion, to the bit."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from p3m_lightning.methods.p3m_net.network import P3MNet
from p3m_lightning.models.bn_folding import fold_bn_into_conv, fuse_conv_bn


def _random_bn(bn: nn.BatchNorm2d, generator: torch.Generator) -> None:
    with torch.no_grad():
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.copy_(torch.randn(t.shape, generator=generator))
        bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=generator) + 0.1)


def test_fold_in_place_equals_torch_fusion_bit_for_bit() -> None:
    generator = torch.Generator().manual_seed(0)
    for bias in (False, True):
        conv = nn.Conv2d(8, 16, 3, padding=1, bias=bias).eval()
        bn = nn.BatchNorm2d(16).eval()
        _random_bn(bn, generator)
        conv = conv.to(memory_format=torch.channels_last)
        expected = fuse_conv_bn_eval(conv, bn)
        fold_bn_into_conv(conv, bn)
        assert torch.equal(conv.weight, expected.weight)
        assert torch.equal(conv.bias, expected.bias)


def test_fused_p3mnet_keeps_its_parameters_in_place() -> None:
    generator = torch.Generator().manual_seed(1)
    model = P3MNet().eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            _random_bn(m, generator)
    weight = model.encoder.conv1.weight
    reference = fuse_conv_bn_eval(model.encoder.conv1, model.encoder.bn1).weight
    fused = fuse_conv_bn(model)
    assert fused.encoder.conv1.weight is weight  # scaled where it lies, not copied
    assert torch.equal(weight, reference)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
