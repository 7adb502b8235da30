"""Encoders for P3M-Net: the published ResNet-34-mp and any timm ``features_only`` model.

Every encoder is an ``nn.Module`` with the same small interface:

- ``out_channels``: six channel widths, for features at strides 1, 2, 4, 8, 16 and 32;
- ``forward(image) -> (features, indices)``: ``features`` is the list of those six maps,
  ``indices`` the five max-pool index maps (for unpooling 2->1, 4->2, 8->4, 16->8, 32->16),
  or an empty list when the encoder has none (the matting decoder then upsamples bilinearly);
- ``arch_config() -> dict``: plain values that rebuild the same architecture
  (``build_encoder``), stored in the project's checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from p3m_lightning.models.safe_load import CheckpointError, read_checkpoint

STRIDES = (1, 2, 4, 8, 16, 32)


class BasicBlock(nn.Module):
    """ResNet's two-conv residual block, stride 1 (``MaxPool2d`` does the downsampling here).

    Same computation and state-dict names (``conv1``, ``bn1``, ``conv2``, ``bn2``,
    ``downsample.0``/``.1``) as torchvision's ``BasicBlock``, so torchvision ResNet-34 weights
    load as they are, without importing torchvision (seconds) on every start.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        downsample: the shortcut's ``1x1 conv -> BN`` when ``in_ch != out_ch``, else ``None``.
    """

    def __init__(self, in_ch: int, out_ch: int, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_ch, H, W)`` -> ``(B, out_ch, H, W)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet34MP(nn.Module):
    """The published ResNet-34 with max-pool downsampling (every pool remembers its indices).

    Stride-1 ``conv1`` and layers; five ``MaxPool2d(3, 2, 1)`` do all the downsampling. Module
    names are those of torchvision's ResNet-34, so ImageNet weights load directly. The unused
    ImageNet head ``fc`` is kept, frozen, only so that checkpoints carry it as published.

    Args:
        weights_path: optional local file with ImageNet weights (torchvision ResNet-34 format or
            the published ``r34mp_pretrained_imagenet.pth.tar``).
        pretrained: download torchvision's ImageNet ResNet-34 weights (needs the network).
    """

    out_channels = (64, 64, 64, 128, 256, 512)

    def __init__(self, weights_path: str | None = None, pretrained: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=1, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, return_indices=True)
        self.layer1 = self._make_layer(64, 64, 3)
        self.layer2 = self._make_layer(64, 128, 4)
        self.layer3 = self._make_layer(128, 256, 6)
        self.layer4 = self._make_layer(256, 512, 3)
        self.fc = nn.Linear(512, 1000).requires_grad_(False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if weights_path is not None:
            self.backbone_weights = load_imagenet_weights(self, weights_path)
        elif pretrained:
            from torchvision.models import ResNet34_Weights

            state = ResNet34_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
            self.load_state_dict(state)

    @staticmethod
    def _make_layer(in_ch: int, out_ch: int, blocks: int) -> nn.Sequential:
        downsample = None
        if in_ch != out_ch:
            downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)
            )
        layers = [BasicBlock(in_ch, out_ch, downsample)]
        layers += [BasicBlock(out_ch, out_ch) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``x``: ``(B, 3, H, W)`` normalised image -> six features and five pool indices."""
        e0 = self.stem(x)
        e0p, id0 = self.pool(e0)
        deeper, indices = self.body(e0p)
        return [e0, e0p, *deeper], [id0, *indices]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stride-1 feature e0, ``(B, 64, H, W)``; each row depends on 7 rows of ``x``."""
        return self.relu(self.bn1(self.conv1(x)))

    def body(self, e0p: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """From the pooled e0 (stride 2) on: the features e1..e4 (strides 4..32) and the pool
        indices id1..id4.

        Split from ``forward`` so that P3M-Net can compute e0 and its pooling in bands of rows
        and go on from the pooled map (``P3MNet.forward``).
        """
        e1p, id1 = self.pool(e0p)
        e1 = self.layer1(e1p)
        e2p, id2 = self.pool(e1)
        e2 = self.layer2(e2p)
        e3p, id3 = self.pool(e2)
        e3 = self.layer3(e3p)
        e4p, id4 = self.pool(e3)
        e4 = self.layer4(e4p)
        return [e1, e2, e3, e4], [id1, id2, id3, id4]

    def arch_config(self) -> dict[str, Any]:
        """Plain values that rebuild this architecture (weights not included)."""
        return {"type": "resnet34_mp"}


class Stem(nn.Module):
    """Shallow features an encoder lacks: stride 1 and, if asked, stride 2.

    Two ``conv3x3 -> BN -> ReLU`` blocks at full size, then one strided block when the encoder
    has no stride-2 level (as the journal P3M-Net does for Swin-T).
    """

    def __init__(self, channels: tuple[int, int], with_stride2: bool) -> None:
        super().__init__()
        c1, c2 = channels
        self.full = nn.Sequential(_cbr(3, c1, 1), _cbr(c1, c1, 1))
        self.down = _cbr(c1, c2, 2) if with_stride2 else None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Returns ``[stride1]`` or ``[stride1, stride2]``."""
        f1 = self.full(x)
        return [f1] if self.down is None else [f1, self.down(f1)]


def _cbr(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class TimmEncoder(nn.Module):
    """Any timm model with ``features_only`` support, at strides 1 to 32.

    The deepest four levels (strides 4, 8, 16, 32) come from the timm model; stride 2 too when
    the model has it (ResNets, EfficientNets), otherwise the ``Stem`` provides it (ConvNeXt,
    Swin); stride 1 always comes from the ``Stem``. Channels-last (NHWC) feature outputs of
    transformer models are permuted to NCHW.

    Args:
        name: timm model name, e.g. ``resnet50``, ``efficientnet_b0``, ``convnext_tiny``,
            ``swin_tiny_patch4_window7_224``.
        pretrained: let timm fetch ImageNet weights from its hub (needs the network).
        weights_path: local file with the timm model's weights instead.
        stem_channels: widths of the stem's stride-1 and stride-2 features.
        model_kwargs: extra keyword arguments for ``timm.create_model`` (e.g. ``img_size``).
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        weights_path: str | None = None,
        stem_channels: tuple[int, int] = (32, 64),
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        import timm

        self.name = name
        self.stem_channels = tuple(stem_channels)
        self.model_kwargs = dict(model_kwargs or {})
        probe = timm.create_model(name, features_only=True, pretrained=False, **self.model_kwargs)
        reductions = list(probe.feature_info.reduction())
        wanted = [r for r in (2, 4, 8, 16, 32) if r in reductions]
        missing = {4, 8, 16, 32} - set(wanted)
        if missing:
            raise ValueError(
                f"timm model {name!r} has feature strides {reductions}; P3M-Net needs "
                f"strides 4, 8, 16 and 32 (missing {sorted(missing)})."
            )
        # The last feature at each stride is the deepest one with that resolution.
        out_indices = [max(i for i, r in enumerate(reductions) if r == s) for s in wanted]
        del probe
        self.model = timm.create_model(
            name,
            features_only=True,
            out_indices=out_indices,
            pretrained=pretrained and weights_path is None,
            **self.model_kwargs,
        )
        if weights_path is not None:
            self.backbone_weights = load_imagenet_weights(self.model, weights_path)
        timm_channels = list(self.model.feature_info.channels())
        self.nhwc = getattr(self.model, "output_fmt", "NCHW") == "NHWC"
        has_stride2 = wanted[0] == 2
        self.stem = Stem(self.stem_channels, with_stride2=not has_stride2)
        stem_out = [self.stem_channels[0]] + ([] if has_stride2 else [self.stem_channels[1]])
        self.out_channels = tuple(stem_out + timm_channels)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``x``: ``(B, 3, H, W)`` -> six features (strides 1..32) and no indices."""
        deep = self.model(x)
        if self.nhwc:
            deep = [f.permute(0, 3, 1, 2) for f in deep]
        return self.stem(x) + list(deep), []

    def arch_config(self) -> dict[str, Any]:
        """Plain values that rebuild this architecture (weights not included)."""
        return {
            "type": "timm",
            "name": self.name,
            "stem_channels": list(self.stem_channels),
            "model_kwargs": self.model_kwargs,
        }


def build_encoder(config: dict[str, Any]) -> nn.Module:
    """Rebuild an encoder from ``arch_config()`` values, without pretrained weights.

    Only the encoder types of this module are accepted, so a checkpoint cannot name arbitrary
    code to construct.
    """
    kind = config.get("type")
    if kind == "resnet34_mp":
        return ResNet34MP()
    if kind == "timm":
        return TimmEncoder(
            name=str(config["name"]),
            stem_channels=tuple(config.get("stem_channels", (32, 64))),
            model_kwargs=dict(config.get("model_kwargs") or {}),
        )
    raise ValueError(f"unknown encoder type {kind!r}; expected 'resnet34_mp' or 'timm'")


@dataclass(frozen=True)
class BackboneWeights:
    """What a backbone weight file gave a network (the run's recorded ``init``).

    A network that loaded one keeps it as ``backbone_weights`` on the module loaded into
    (`loaded_backbone` finds it).

    Attributes:
        path: the file.
        loaded: tensors taken from it.
        expected: tensors of the backbone; a file that covers fewer is refused.
    """

    path: str
    loaded: int
    expected: int

    def describe(self) -> str:
        """``imagenet:<file> (backbone 318/318 tensors)``."""
        return f"imagenet:{self.path} (backbone {self.loaded}/{self.expected} tensors)"


def read_backbone_state(
    path: str | Path, keys: tuple[str, ...] = ("state_dict", "model")
) -> dict[str, torch.Tensor]:
    """The tensors of a backbone weight file, read with ``weights_only`` (`read_checkpoint`):
    the first of ``keys`` that holds a dict, else the file itself, ``module.`` prefixes
    (DataParallel) stripped.

    Raises:
        FileNotFoundError, CheckpointError: no such file, or not a readable checkpoint.
    """
    raw = read_checkpoint(path)
    for key in keys:
        if isinstance(raw.get(key), dict):
            raw = raw[key]
            break
    return {k.removeprefix("module."): v for k, v in raw.items() if torch.is_tensor(v)}


def widen_input(
    state: dict[str, torch.Tensor], name: str, target: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``state`` with the first conv ``name`` zero-padded along its input channels to
    ``target``'s shape: an RGB backbone for a network that also takes a trimap (or more), the
    extra channels starting at zero as the methods' own trainings do. Unchanged where ``name``
    is absent or has another shape than ``(out, c < in, k, k)`` of ``target``."""
    weight = state.get(name)
    if weight is None or weight.dim() != target.dim() or weight.shape[1] >= target.shape[1]:
        return state
    if weight.shape[0] != target.shape[0] or weight.shape[2:] != target.shape[2:]:
        return state
    widened = torch.zeros_like(target)
    widened[:, : weight.shape[1]] = weight
    return {**state, name: widened}


def load_backbone(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    path: str | Path,
    expected_file: str,
    parts: tuple[str, ...] | None = None,
) -> BackboneWeights:
    """Load a backbone's weights into ``module``, refusing a file that does not cover it.

    The backbone is every tensor of ``module``'s state dict (BatchNorm's
    ``num_batches_tracked`` counters aside), or of its top-level submodules ``parts``. Each
    must be in ``state`` with its shape: a file that covers only some (another architecture
    sharing a few names) would leave the rest at random and still claim ImageNet weights.
    Tensors of ``state`` outside the backbone (a classifier head) are ignored.

    Args:
        module: the module whose names ``state`` uses.
        state: the file's tensors, already in ``module``'s names (`read_backbone_state`, plus
            the method's renaming or `widen_input`).
        path: the file, for messages and the record.
        expected_file: what the file should be, for the message (``"a torchvision ResNet-50
            state dict"``).
        parts: top-level submodule names that form the backbone; default all of ``module``.

    Returns:
        What was loaded (keep it as ``module.backbone_weights``).

    Raises:
        CheckpointError: naming the file, how many backbone tensors it lacks or mis-shapes,
            and the first of them.
    """
    own = module.state_dict()
    expected = [
        k
        for k in own
        if not k.endswith("num_batches_tracked") and (parts is None or k.split(".")[0] in parts)
    ]
    missing = [k for k in expected if k not in state]
    misshaped = [
        f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or misshaped:
        covered = len(expected) - len(missing) - len(misshaped)
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing, first {missing[:5]}")
        if misshaped:
            problems.append(f"{len(misshaped)} of the wrong shape, first {misshaped[:5]}")
        raise CheckpointError(
            f"{path}: does not cover the backbone of {type(module).__name__}: it has "
            f"{covered} of its {len(expected)} tensors ({'; '.join(problems)}). Expected "
            f"{expected_file}."
        )
    module.load_state_dict({k: state[k] for k in expected}, strict=False)
    return BackboneWeights(str(path), len(expected), len(expected))


def load_imagenet_weights(module: nn.Module, path: str | Path) -> BackboneWeights:
    """Load a local ImageNet classification checkpoint into an encoder (`load_backbone` over
    the whole encoder).

    Accepts a bare state dict or one wrapped under ``state_dict`` / ``model``, with or without
    a ``module.`` prefix (DataParallel). Keys the encoder does not have (e.g. a classifier head
    of a timm model) are ignored; encoder tensors the file lacks or mis-shapes raise an error
    naming them.
    """
    return load_backbone(
        module,
        read_backbone_state(path),
        path,
        f"an ImageNet state dict with the names of {type(module).__name__}",
    )


def loaded_backbone(net: nn.Module) -> BackboneWeights | None:
    """The backbone weights ``net`` was built with, if a module of it loaded some."""
    for module in net.modules():
        weights = getattr(module, "backbone_weights", None)
        if isinstance(weights, BackboneWeights):
            return weights
    return None
