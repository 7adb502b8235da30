"""Building blocks of GCA-Matting: spectral-normalised convolutions, residual blocks and the
guided contextual attention module.

Attribute names follow the released ``gca-dist-all-data.pth`` so that it loads unchanged:
a spectral-normalised convolution stores ``<name>.module.weight_bar`` (the raw weight) and the
power-iteration vectors ``<name>.module.weight_u`` / ``weight_v``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DecoderBlock", "EncoderBlock", "GuidedContextualAttention", "SpectralNorm"]

_NORM_EPS = 1e-12


def _unit(v: Tensor) -> Tensor:
    return v / (v.norm() + _NORM_EPS)


class SpectralNorm(nn.Module):
    """A convolution whose weight is divided by its largest singular value (Miyato et al. 2018).

    The weight is seen as a ``(weight.shape[0], -1)`` matrix (for a transposed convolution
    that is the input-channel axis, as in GCA). In training mode one power iteration refines
    ``u``/``v`` before each forward; in eval mode they are frozen, so eval outputs are
    deterministic. ``u``/``v`` are buffers (the official code holds them as frozen parameters;
    the state-dict names are the same).

    Args:
        module: an ``nn.Conv2d`` or ``nn.ConvTranspose2d``; its ``weight`` becomes
            ``weight_bar``.
    """

    def __init__(self, module: nn.Conv2d | nn.ConvTranspose2d) -> None:
        super().__init__()
        weight = module.weight.detach().clone()
        del module._parameters["weight"]
        height = weight.shape[0]
        module.register_buffer("weight_u", _unit(torch.randn(height)))
        module.register_buffer("weight_v", _unit(torch.randn(weight[0].numel())))
        module.register_parameter("weight_bar", nn.Parameter(weight))
        self.module = module

    @torch.no_grad()
    def power_iteration(self, steps: int = 1) -> None:
        """Refine ``u``/``v`` towards the top singular vectors of the current weight."""
        m = self.module
        matrix = m.weight_bar.view(m.weight_bar.shape[0], -1)
        for _ in range(steps):
            m.weight_v.copy_(_unit(matrix.t() @ m.weight_u))
            m.weight_u.copy_(_unit(matrix @ m.weight_v))

    def normalised_weight(self) -> Tensor:
        """The weight divided by its spectral-norm estimate ``u^T W v``."""
        m = self.module
        w = m.weight_bar
        matrix = w.view(w.shape[0], -1)
        if self.training:
            self.power_iteration()
        sigma = torch.dot(m.weight_u, matrix @ m.weight_v)
        return w / sigma

    def forward(self, x: Tensor) -> Tensor:
        m = self.module
        w = self.normalised_weight()
        if isinstance(m, nn.ConvTranspose2d):
            return F.conv_transpose2d(
                x, w, m.bias, m.stride, m.padding, m.output_padding, m.groups, m.dilation
            )
        return F.conv2d(x, w, m.bias, m.stride, m.padding, m.dilation, m.groups)


def sn_conv(
    cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1
) -> SpectralNorm:
    """Bias-free spectral-normalised convolution."""
    return SpectralNorm(nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False))


def sn_deconv(channels: int) -> SpectralNorm:
    """Bias-free spectral-normalised 4x4 stride-2 transposed convolution (x2 upsampling)."""
    return SpectralNorm(nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False))


class EncoderBlock(nn.Module):
    """ResNet basic block; the shortcut (``downsample``) is avg-pool + 1x1 conv when strided
    (ResNet-D), a 1x1 conv when only the width changes.

    Args:
        cin: input channels.
        cout: output channels.
        stride: 1 or 2.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = sn_conv(cin, cout, stride=stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = sn_conv(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Sequential | None = None
        if stride != 1:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(2, stride), sn_conv(cin, cout, 1, padding=0), nn.BatchNorm2d(cout)
            )
        elif cin != cout:
            self.downsample = nn.Sequential(sn_conv(cin, cout, 1, padding=0), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class DecoderBlock(nn.Module):
    """Decoder basic block: a 4x4 transposed conv doubles the size when ``upsample`` is set,
    the shortcut then is nearest x2 + 1x1 conv; LeakyReLU(0.2) activations.

    Args:
        cin: input channels.
        cout: output channels.
        upsample: whether this block doubles H and W.
    """

    def __init__(self, cin: int, cout: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv1 = sn_deconv(cin) if upsample else sn_conv(cin, cin)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv2 = sn_conv(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.upsample: nn.Sequential | None = None
        if upsample:
            self.upsample = nn.Sequential(
                nn.UpsamplingNearest2d(scale_factor=2),
                sn_conv(cin, cout, 1, padding=0),
                nn.BatchNorm2d(cout),
            )
        elif cin != cout:
            self.upsample = nn.Sequential(sn_conv(cin, cout, 1, padding=0), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.upsample is None else self.upsample(x)
        out = F.leaky_relu(self.bn1(self.conv1(x)), 0.2)
        out = self.bn2(self.conv2(out))
        return F.leaky_relu(out + identity, 0.2)


def _patches(x: Tensor, kernel: int, stride: int) -> Tensor:
    """Reflect-padded sliding patches, one per output position.

    Returns:
        ``(B, L, C, kernel, kernel)`` with ``L = (H / stride) * (W / stride)`` in row-major order.
    """
    left, right = (kernel - stride + 1) // 2, (kernel - stride) // 2
    x = F.pad(x, (left, right, left, right), mode="reflect")
    p = x.unfold(2, kernel, stride).unfold(3, kernel, stride)  # B, C, h, w, k, k
    b, c = p.shape[:2]
    return p.permute(0, 2, 3, 1, 4, 5).reshape(b, -1, c, kernel, kernel)


class GuidedContextualAttention(nn.Module):
    """Guided contextual attention (GCA, Li & Lu AAAI 2020).

    Affinities between 3x3 patches of the (half-resolution) image guidance features decide
    from where each position borrows alpha features: the 4x4 alpha-feature patches are
    recombined by a transposed convolution weighted by the softmax of the affinities. Patches
    in the unknown region are scaled by ``sqrt(|U|/|K|)``, known ones by ``sqrt(|K|/|U|)``
    (clamped to [0.1, 10]), and an unknown patch cannot attend to itself. The result passes
    a 1x1 conv + BN (initialised near zero) and is added to the input.

    Args:
        channels: channels of the alpha features.
        guidance_channels: channels of the guidance features (halved by ``guidance_conv``).
        rate: downsampling of the attention grid relative to the features.
    """

    def __init__(self, channels: int = 128, guidance_channels: int = 128, rate: int = 2) -> None:
        super().__init__()
        self.rate = rate
        self.guidance_conv = nn.Conv2d(guidance_channels, guidance_channels // 2, 1)
        self.W = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels)
        )
        nn.init.xavier_uniform_(self.guidance_conv.weight)
        nn.init.zeros_(self.guidance_conv.bias)
        nn.init.xavier_uniform_(self.W[0].weight)
        nn.init.constant_(self.W[1].weight, 1e-3)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, guidance: Tensor, feat: Tensor, unknown: Tensor) -> Tensor:
        """Attend over ``feat`` guided by ``guidance``.

        Args:
            guidance: ``(B, Cg, h, w)`` image features.
            feat: ``(B, C, h, w)`` alpha features; ``h`` and ``w`` even.
            unknown: ``(B, 1, h, w)`` unknown-region mask in {0, 1}.

        Returns:
            ``(B, C, h, w)`` features.
        """
        b, c, h, w = feat.shape
        r = self.rate
        g = F.interpolate(self.guidance_conv(guidance), scale_factor=1 / r, mode="nearest")
        gh, gw = g.shape[2:]
        n = gh * gw
        alpha_patches = _patches(feat, 2 * r, r)  # B, n, C, 4, 4
        guide_patches = _patches(g, 3, 1)  # B, n, Cg/2, 3, 3

        unknown = F.interpolate(unknown, scale_factor=1 / r, mode="nearest")
        u_mean = unknown.mean(dim=(2, 3))
        k_mean = 1.0 - u_mean
        u_scale = torch.clamp(torch.sqrt(u_mean / k_mean), 0.1, 10).to(feat)  # B, 1
        k_scale = torch.clamp(torch.sqrt(k_mean / u_mean), 0.1, 10).to(feat)
        # A patch counts as unknown when any of its 3x3 cells is.
        patch_unknown = (_patches(unknown, 3, 1).mean(dim=(2, 3, 4)) > 0).to(feat)  # B, n
        scale = u_scale * patch_unknown + k_scale * (1.0 - patch_unknown)

        norms = guide_patches.flatten(2).norm(dim=2).clamp_min(1e-4)  # B, n
        kernels = (guide_patches / norms[..., None, None, None]).flatten(0, 1)
        g_pad = F.pad(g, (1, 1, 1, 1), mode="reflect").reshape(1, -1, gh + 2, gw + 2)
        scores = F.conv2d(g_pad, kernels, groups=b).view(b, n, gh, gw)

        scores = scores * scale[..., None, None]
        self_mask = torch.eye(n, device=feat.device, dtype=feat.dtype).view(1, n, gh, gw) * -1e4
        scores = scores + self_mask * patch_unknown[..., None, None]
        attention = F.softmax(scores, dim=1)

        out = F.conv_transpose2d(
            attention.reshape(1, b * n, gh, gw),
            alpha_patches.flatten(0, 1),
            stride=r,
            padding=1,
            groups=b,
        )
        out = out.view(b, c, h, w) / 4.0
        return self.W(out) + feat
