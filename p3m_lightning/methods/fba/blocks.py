"""Building blocks of FBA Matting: weight-standardised convolutions, a dilated ResNet-50
with group norm, and the trimap encodings of the official input.

Names follow the released ``FBA.pth`` (``encoder.layerN.M.conv1``, ``bn1`` for the group
norms, ``downsample.0/1``) so that it loads with ``load_state_dict``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m_lightning.models.trimap_guided import trimap_levels

__all__ = [
    "CLICK_SIGMAS",
    "Bottleneck",
    "DilatedResNet50",
    "WSConv2d",
    "distance_to_region",
    "gn",
    "trimap_distance_features",
    "two_channel_trimap",
]


class WSConv2d(nn.Conv2d):
    """Conv2d with weight standardisation (Qiao et al. 2019): each output filter is shifted to
    zero mean and scaled to unit (biased) variance, ``eps = 1e-5``, before the convolution.

    The standardisation is part of the forward pass (differentiable). The official code
    instead overwrites the stored weight with its standardised version before each training
    forward and on ``train()``/``eval()``; the released weights are stored standardised, so
    both give the same outputs on them (to ~1e-5 relative).
    """

    def __init__(self, *args, eps: float = 1e-5, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.eps = eps

    def standardised_weight(self) -> Tensor:
        """The weight with zero mean and unit variance per output channel."""
        w = self.weight
        flat = w.reshape(w.shape[0], -1)
        mean = flat.mean(dim=1, keepdim=True)
        var = flat.var(dim=1, unbiased=False, keepdim=True)
        return ((flat - mean) / torch.sqrt(var + self.eps)).view_as(w)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(
            x,
            self.standardised_weight(),
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )


def gn(channels: int) -> nn.GroupNorm:
    """Group norm with 32 groups (the official ``norm``)."""
    return nn.GroupNorm(32, channels)


class Bottleneck(nn.Module):
    """ResNet-50 bottleneck (stride and dilation on the 3x3 conv), WS convs and group norm.

    Args:
        cin: input channels.
        planes: bottleneck width; output channels are ``4 * planes``.
        stride: stride of the 3x3 conv and the projection shortcut.
        dilation: dilation (and padding) of the 3x3 conv.
        project: whether the shortcut is a 1x1 conv + group norm.
    """

    def __init__(
        self, cin: int, planes: int, stride: int = 1, dilation: int = 1, project: bool = False
    ) -> None:
        super().__init__()
        cout = planes * 4
        self.conv1 = WSConv2d(cin, planes, 1, bias=False)
        self.bn1 = gn(planes)
        self.conv2 = WSConv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = gn(planes)
        self.conv3 = WSConv2d(planes, cout, 1, bias=False)
        self.bn3 = gn(cout)
        self.downsample: nn.Sequential | None = None
        if project:
            self.downsample = nn.Sequential(
                WSConv2d(cin, cout, 1, stride=stride, bias=False), gn(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + identity)


class DilatedResNet50(nn.Module):
    """ResNet-50 (GN + WS) at output stride 8: stages 3 and 4 keep stride 1 and dilate their
    3x3 convs (first block of stage 3: 1, then 2; first block of stage 4: 2, then 4).

    Args:
        in_channels: input channels (11 for FBA).
    """

    def __init__(self, in_channels: int = 11) -> None:
        super().__init__()
        self.conv1 = WSConv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = gn(64)
        self.layer1 = self._stage(64, 64, 3, stride=1, first_dilation=1, dilation=1)
        self.layer2 = self._stage(256, 128, 4, stride=2, first_dilation=1, dilation=1)
        self.layer3 = self._stage(512, 256, 6, stride=1, first_dilation=1, dilation=2)
        self.layer4 = self._stage(1024, 512, 3, stride=1, first_dilation=2, dilation=4)

    @staticmethod
    def _stage(
        cin: int, planes: int, blocks: int, stride: int, first_dilation: int, dilation: int
    ) -> nn.Sequential:
        layers = [Bottleneck(cin, planes, stride, first_dilation, project=True)]
        layers += [Bottleneck(planes * 4, planes, 1, dilation) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Encode ``x`` ``(B, C, H, W)`` (H, W multiples of 8).

        Returns:
            ``[x, stem (64, H/2), layer1 (256, H/4), layer2 (512, H/8), layer3 (1024, H/8),
            layer4 (2048, H/8)]``.
        """
        feats = [x]
        x = F.relu(self.bn1(self.conv1(x)))
        feats.append(x)
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            feats.append(x)
        return feats


def two_channel_trimap(trimap: Tensor) -> Tensor:
    """The official 2-channel trimap: (background, foreground) indicator maps.

    Args:
        trimap: ``(B, 1, H, W)`` float in [0, 255].

    Returns:
        ``(B, 2, H, W)`` float in {0, 1}.
    """
    background, foreground = trimap_levels(trimap)
    return torch.cat([background, foreground], dim=1).to(trimap.dtype)


def _distance_1d_sq(mask: Tensor) -> Tensor:
    # Squared distance along the last axis to the nearest True (inf where a row has none).
    n = mask.shape[-1]
    pos = torch.arange(n, device=mask.device, dtype=torch.float32).expand(mask.shape)
    big = float("inf")
    last = torch.where(mask, pos, torch.full_like(pos, -big)).cummax(dim=-1).values
    nxt = torch.where(mask, pos, torch.full_like(pos, big)).flip(-1).cummin(dim=-1).values.flip(-1)
    return torch.minimum(pos - last, nxt - pos) ** 2


def distance_to_region(mask: Tensor, chunk: int = 64) -> Tensor:
    """Exact Euclidean distance from every pixel to the nearest True pixel of ``mask``.

    Separable: squared distances along columns first, then for each pixel the minimum over
    the row of ``g(i, j')^2 + (j - j')^2`` (computed in chunks of output columns to bound
    memory). Equal to OpenCV's ``distanceTransform(DIST_L2, DIST_MASK_PRECISE)`` of the
    complement, which the official code uses.

    Args:
        mask: ``(B, H, W)`` bool.
        chunk: output columns per step.

    Returns:
        ``(B, H, W)`` float32; 0 on the region, ``inf`` everywhere if the region is empty.
    """
    g = _distance_1d_sq(mask.transpose(1, 2)).transpose(1, 2)  # along columns (H axis)
    w = mask.shape[-1]
    cols = torch.arange(w, device=mask.device, dtype=torch.float32)
    out = []
    for start in range(0, w, chunk):
        j = cols[start : start + chunk]
        cost = g[:, :, None, :] + (j[:, None] - cols[None, :]) ** 2  # B, H, chunk, W
        out.append(cost.min(dim=-1).values)
    return torch.sqrt(torch.cat(out, dim=-1))


CLICK_SIGMAS = tuple(f * 320 for f in (0.02, 0.08, 0.16))
"""Gaussian widths of the official trimap encoding: 0.02, 0.08 and 0.16 of L = 320 pixels."""


def trimap_distance_features(trimap: Tensor) -> Tensor:
    """The official 6-channel trimap encoding ("clicks"): for the background, then the
    foreground region, ``exp(-d^2 / (2 sigma^2))`` of the distance ``d`` to that region, at
    ``sigma = 6.4, 25.6, 51.2`` pixels (fixed, whatever the image size).

    Args:
        trimap: ``(B, 1, H, W)`` float in [0, 255].

    Returns:
        ``(B, 6, H, W)`` in [0, 1], dtype of ``trimap``; 1 on the region itself, 0 everywhere
        for an empty region.
    """
    background, foreground = trimap_levels(trimap)
    channels = []
    for region in (background, foreground):
        d_sq = distance_to_region(region[:, 0]) ** 2
        for sigma in CLICK_SIGMAS:
            channels.append(torch.exp(-d_sq / (2 * sigma**2)))
    return torch.stack(channels, dim=1).to(trimap.dtype)
