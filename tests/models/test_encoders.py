"""Backbone weight files (`load_backbone`): a file must cover the whole backbone or be refused,
and the network records what it loaded."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from p3m_lightning.methods.alphagan.network import AlphaGANGenerator
from p3m_lightning.methods.dim.network import DIMNet
from p3m_lightning.methods.fba.blocks import DilatedResNet50
from p3m_lightning.methods.fba.network import FBANet
from p3m_lightning.methods.gca.network import GCANet
from p3m_lightning.methods.indexnet.network import _STAGES, IndexNet
from p3m_lightning.models.encoders import BackboneWeights, load_backbone, loaded_backbone
from p3m_lightning.models.safe_load import CheckpointError

GCA_SMALL = {"encoder_layers": (1, 1, 1, 1), "decoder_layers": (1, 1, 1, 1)}
GCA_BACKBONE = ("conv1", "conv2", "conv3", "bn1", "bn2", "bn3", "layer1", "layer2", "layer3")


def _tensors(module: nn.Module, parts: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
    """``module``'s backbone tensors (counters aside), as a backbone file holds them."""
    return {
        k: v.clone()
        for k, v in module.state_dict().items()
        if not k.endswith("num_batches_tracked") and (parts is None or k.split(".")[0] in parts)
    }


def _rgb(state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """The file of an RGB backbone: the first conv's extra input channels dropped."""
    return {**state, name: state[name][:, :3].clone()}


def _dim_file() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    encoder = DIMNet(width=8, refiner_channels=8).backbone.encoder
    own = _tensors(encoder, ("layer1", "layer2", "layer3", "layer4", "layer5"))
    return _rgb(own, "layer1.0.weight"), own


def _gca_file() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The official encoder file: RGB conv1, so its spectral norm's v has 3 x 3 x 3 entries."""
    torch.manual_seed(1)
    own = _tensors(GCANet(**GCA_SMALL).encoder, (*GCA_BACKBONE, "layer_bottleneck"))
    state = _rgb(own, "conv1.module.weight_bar")
    state["conv1.module.weight_v"] = own["conv1.module.weight_v"][:27].clone()
    return state, own


def _fba_file() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    own = _tensors(DilatedResNet50(in_channels=11))
    return _rgb(own, "conv1.weight"), own


def _indexnet_file() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The official code's MobileNetV2 names (``features.N.conv.M``) for IndexNet's encoder."""
    torch.manual_seed(1)
    own = _tensors(IndexNet(), tuple(f"layer{i}" for i in range(len(_STAGES) + 1)))
    blocks = [(i, j) for i, (_, _, _, n) in enumerate(_STAGES, start=1) for j in range(n)]
    number = {block: k for k, block in enumerate(blocks, start=1)}
    state = {}
    for key, value in own.items():
        layer, rest = key.split(".", 1)
        if layer == "layer0":
            state[f"features.0.{rest}"] = value
        else:
            block, inner = rest.split(".", 1)
            state[f"features.{number[(int(layer[5:]), int(block))]}.{inner}"] = value
    state["features.0.0.weight"] = state["features.0.0.weight"][:, :3].clone()
    state["features.18.0.weight"] = torch.zeros(1280, 320, 1, 1)  # the unused last conv
    return state, own


def _save(state: dict[str, torch.Tensor], path: Path) -> str:
    torch.save(state, path)
    return str(path)


def test_load_backbone_refuses_a_file_that_covers_part_of_it_naming_what_is_missing(tmp_path):
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    state = {k: v for k, v in module.state_dict().items() if not k.startswith("2.")}
    state["1.weight"] = torch.ones(5)
    with pytest.raises(CheckpointError) as err:
        load_backbone(module, state, "/w/other.pth", "a test file")
    message = str(err.value)
    assert message.startswith("/w/other.pth: does not cover the backbone of Sequential")
    assert "it has 5 of its 8 tensors" in message
    assert "2 missing, first ['2.weight', '2.bias']" in message
    assert "1 of the wrong shape, first ['1.weight (5,) != (4,)']" in message
    assert "Expected a test file." in message


def test_load_backbone_loads_every_tensor_ignores_extra_ones_and_says_so() -> None:
    source, target = nn.Linear(3, 2), nn.Linear(3, 2)
    state = {**source.state_dict(), "head.weight": torch.zeros(1)}
    record = load_backbone(target, state, "/w/file.pth", "a test file")
    assert record == BackboneWeights("/w/file.pth", 2, 2)
    assert record.describe() == "imagenet:/w/file.pth (backbone 2/2 tensors)"
    assert torch.equal(target.weight, source.weight) and torch.equal(target.bias, source.bias)


def test_a_resnet34_file_is_refused_by_alphagan(tmp_path: Path) -> None:
    # The reported case: a ResNet-34 file shares 17 names with ResNet-50 and used to be
    # recorded as AlphaGAN's ImageNet initialisation.
    path = _save(torchvision.models.resnet34().state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(CheckpointError, match=re.escape(path) + r".* of its 265 tensors"):
        AlphaGANGenerator(pretrained_path=path)


def test_a_resnet50_file_initialises_alphagan_whole(tmp_path: Path) -> None:
    imagenet = torchvision.models.resnet50().state_dict()
    path = _save(imagenet, tmp_path / "resnet50.pth")
    net = AlphaGANGenerator(pretrained_path=path)
    assert loaded_backbone(net) == BackboneWeights(path, 265, 265)
    conv1 = net.encoder.conv1.weight
    assert torch.equal(conv1[:, :3], imagenet["conv1.weight"]) and not conv1[:, 3:].any()
    assert torch.equal(net.encoder.layer4[2].bn3.running_var, imagenet["layer4.2.bn3.running_var"])


SMALL_METHODS: dict[str, tuple[Callable[[str | None], nn.Module], Callable[[], tuple]]] = {
    "dim": (lambda p: DIMNet(width=8, refiner_channels=8, pretrained_path=p), _dim_file),
    "gca": (lambda p: GCANet(**GCA_SMALL, pretrained_path=p), _gca_file),
    "indexnet": (lambda p: IndexNet(pretrained_path=p), _indexnet_file),
    "fba": (lambda p: FBANet(pretrained_path=p), _fba_file),
}
"""Each method's network at a test size, and a whole backbone file for it (as saved, and in
the network's own names)."""
BACKBONE: dict[str, Callable[[nn.Module], nn.Module]] = {
    "dim": lambda net: net.backbone.encoder,
    "gca": lambda net: net.encoder,
    "indexnet": lambda net: net,
    "fba": lambda net: net.encoder,
}
"""The module whose names the loaded tensors have."""
STEM = {"dim": "layer1.0.weight", "gca": "conv1.module.weight_bar", "indexnet": "layer0.0.weight"}
STEM["fba"] = "conv1.weight"


@pytest.mark.parametrize("method", sorted(SMALL_METHODS))
def test_a_backbone_file_that_covers_part_of_the_backbone_is_refused(method, tmp_path) -> None:
    build, whole = SMALL_METHODS[method]
    state, _ = whole()
    dropped = sorted(state)[len(state) // 2]
    del state[dropped]
    path = _save(state, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=re.escape(path) + r".*1 missing, first \["):
        build(path)


@pytest.mark.parametrize("method", sorted(SMALL_METHODS))
def test_a_whole_backbone_file_loads_every_tensor_and_is_recorded(method, tmp_path) -> None:
    build, whole = SMALL_METHODS[method]
    state, own = whole()
    path = _save(state, tmp_path / "backbone.pth")
    net = build(path)
    expected = len(own)
    assert loaded_backbone(net) == BackboneWeights(path, expected, expected)
    loaded = BACKBONE[method](net).state_dict()
    stem = STEM[method]
    for name, value in own.items():
        if name == stem:
            # The RGB channels from the file; the trimap's (and FBA's other) channels at zero.
            assert torch.equal(loaded[name][:, :3], value[:, :3]), name
            assert not loaded[name][:, 3:].any(), name
        elif name == "conv1.module.weight_v":
            # As the official GCA loader: v widened with zeros, like the weight it estimates.
            assert torch.equal(loaded[name][:27], value[:27]) and not loaded[name][27:].any()
        else:
            assert torch.equal(loaded[name], value), name
