"""BASIC, Background Matting (Sengupta et al., CVPR 2020): the supervised ``ResnetConditionHR``.

Four encoders (image, background plate, soft segmentation, motion frames) meet in the
paper's context switching block: each cue's features are concatenated with the image's,
projected by a 1x1 convolution, and the three projections join the image features in a
residual decoder that splits into an alpha head (tanh) and a foreground head with a skip from
the image encoder at half resolution.

Module names and indices follow the authors' ``networks.py`` so that their released
``netG_epoch_*.pth`` checkpoints (saved from ``nn.DataParallel``: strip ``module.``) load.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m_lightning.models.contract import check_divisible
from p3m_lightning.normalization import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["BASICNet", "plate_segmentation"]

# The official test replaces F by the image where the [-1, 1] alpha exceeds 0.95.
_FG_FROM_IMAGE_ABOVE = 0.975

# Input channels of the image, plate, segmentation and motion encoders (grey frames x 4).
_IMAGE_C, _PLATE_C, _SEG_C, _MOTION_C = 3, 3, 1, 4


def _gaussian_blur(x: Tensor, size: int, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(B, 1, H, W)`` with replicated borders."""
    t = torch.arange(size, dtype=x.dtype, device=x.device) - (size - 1) / 2
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    pad = size // 2
    x = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, size))
    return F.conv2d(x, k.view(1, 1, size, 1))


def plate_segmentation(
    image: Tensor,
    bg: Tensor,
    threshold: float = 0.1,
    erode: int = 10,
    dilate: int = 10,
    blur_size: int = 31,
    blur_sigma: float = 5.0,
) -> Tensor:
    """Soft segmentation of the subject from its difference with the background plate.

    The official test feeds a DeepLabv3+ person mask, cleaned up at 512x512 (the ``basic``
    strategy reproduces that clean-up, ``methods/basic/inference.py``). Here the hard mask is
    the set of pixels whose largest channel difference to the plate exceeds ``threshold``,
    opened with square structuring elements and blurred: a clean-up of about the same reach,
    not the official one.

    Args:
        image: ``(B, 3, H, W)`` RGB in [0, 1].
        bg: ``(B, 3, H, W)`` background plate, RGB in [0, 1].
        threshold: colour difference above which a pixel is subject.
        erode: erosion radius in pixels (removes specks of plate noise).
        dilate: dilation radius in pixels.
        blur_size: side of the Gaussian kernel (odd).
        blur_sigma: its standard deviation (OpenCV's default for 31 is 5.0).

    Returns:
        ``(B, 1, H, W)`` soft segmentation in [0, 1].
    """
    diff = (image - bg).abs().amax(dim=1, keepdim=True)
    mask = (diff > threshold).to(image.dtype)
    mask = -F.max_pool2d(-mask, 2 * erode + 1, stride=1, padding=erode)
    mask = F.max_pool2d(mask, 2 * dilate + 1, stride=1, padding=dilate)
    return _gaussian_blur(mask, blur_size, blur_sigma).clamp(0.0, 1.0)


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2 if kernel == 3 else 0),
        nn.BatchNorm2d(c_out),
        nn.ReLU(True),
    ]


def _cue_encoder(c_in: int, ngf: int) -> nn.Sequential:
    """7x7 stem then two stride-2 3x3 convs: ``(B, c_in, H, W) -> (B, 4 ngf, H/4, W/4)``."""
    return nn.Sequential(
        nn.ReflectionPad2d(3),
        *_conv_bn_relu(c_in, ngf, 7),
        *_conv_bn_relu(ngf, 2 * ngf, 3, 2),
        *_conv_bn_relu(2 * ngf, 4 * ngf, 3, 2),
    )


def _switch(ngf: int) -> nn.Sequential:
    """One arm of the context switching block: 1x1 projection of [image, cue] features."""
    return nn.Sequential(nn.Conv2d(8 * ngf, ngf, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True))


def _up_conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        *_conv_bn_relu(c_in, c_out, 3),
    ]


class ResnetBlock(nn.Module):
    """Reflection-padded residual block (two 3x3 convs + BN), names ``conv_block.{1,2,5,6}``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3),
            nn.BatchNorm2d(dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3),
            nn.BatchNorm2d(dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class BASICNet(nn.Module):
    """Background Matting's ``ResnetConditionHR`` on the project's background-based contract.

    Inputs are the image and a background plate. The soft segmentation, the official third
    cue, is derived inside from the image-plate difference (``plate_segmentation``) unless
    given. The motion cue needs no input: the official forward builds the motion features but
    its third switching arm reads the plate features instead, so they never reach an output;
    ``model_enc_multi`` is kept (frozen) only so that released checkpoints load.

    Args:
        ngf: base width (64 in the released model; 8 gives a tiny model for tests). Every
            layer scales with it; the switching arms have ``ngf`` channels, as officially.
        n_blocks1: residual blocks after the switching block (7 officially).
        n_blocks2: residual blocks of each of the alpha and foreground heads (3 officially).
        pretrained_path: optional local BASIC checkpoint (e.g. the released
            ``syn-comp-adobe`` ``netG_epoch_*.pth``; a ``module.`` prefix is stripped)
            loaded strictly; nothing is downloaded.
    """

    inputs: ClassVar[tuple[str, ...]] = ("image", "bg")
    input_divisor: ClassVar[int] = 4

    def __init__(
        self,
        ngf: int = 64,
        n_blocks1: int = 7,
        n_blocks2: int = 3,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        self.ngf, self.n_blocks1, self.n_blocks2 = ngf, n_blocks1, n_blocks2
        c4 = 4 * ngf
        self.model_enc1 = nn.Sequential(
            nn.ReflectionPad2d(3),
            *_conv_bn_relu(_IMAGE_C, ngf, 7),
            *_conv_bn_relu(ngf, 2 * ngf, 3, 2),
        )
        self.model_enc2 = nn.Sequential(*_conv_bn_relu(2 * ngf, c4, 3, 2))
        self.model_enc_back = _cue_encoder(_PLATE_C, ngf)
        self.model_enc_seg = _cue_encoder(_SEG_C, ngf)
        self.model_enc_multi = _cue_encoder(_MOTION_C, ngf)
        # Never reaches an output (see the class docstring): frozen, so that no optimiser or
        # DDP bucket waits for gradients that cannot come.
        self.model_enc_multi.requires_grad_(False)
        self.comb_back = _switch(ngf)
        self.comb_seg = _switch(ngf)
        self.comb_multi = _switch(ngf)

        self.model_res_dec = nn.Sequential(
            nn.Conv2d(c4 + 3 * ngf, c4, 1, bias=False),
            nn.BatchNorm2d(c4),
            nn.ReLU(True),
            *(ResnetBlock(c4) for _ in range(n_blocks1)),
        )
        self.model_res_dec_al = nn.Sequential(*(ResnetBlock(c4) for _ in range(n_blocks2)))
        self.model_res_dec_fg = nn.Sequential(*(ResnetBlock(c4) for _ in range(n_blocks2)))
        self.model_al_out = nn.Sequential(
            *_up_conv(c4, 2 * ngf),
            *_up_conv(2 * ngf, ngf),
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, 1, 7),
            nn.Tanh(),
        )
        self.model_dec_fg1 = nn.Sequential(*_up_conv(c4, 2 * ngf))
        self.model_fg_out = nn.Sequential(
            *_up_conv(c4, ngf), nn.ReflectionPad2d(3), nn.Conv2d(ngf, _IMAGE_C, 7)
        )
        self._init_weights()
        if pretrained_path is not None:
            state = torch.load(pretrained_path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state)
            self.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})

    def _init_weights(self) -> None:
        """The official ``conv_init``: Xavier-uniform convs (gain sqrt 2, zero bias), BN
        weights drawn from N(1, 0.2), zero BN bias."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight, gain=2**0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.2)
                nn.init.zeros_(m.bias)

    def forward(self, image: Tensor, bg: Tensor, seg: Tensor | None = None) -> dict[str, Tensor]:
        """Predict alpha and foreground.

        The official network sees RGB mapped to [-1, 1]; the ImageNet-normalised inputs are
        converted to that inside.

        Args:
            image: ``(B, 3, H, W)`` ImageNet-normalised RGB; H, W multiples of 4.
            bg: ``(B, 3, H, W)`` background plate, normalised like ``image``.
            seg: optional ``(B, 1, H, W)`` soft segmentation in [0, 1] (e.g. a person
                segmenter's, as the official test uses); derived from the plate if omitted.

        Returns:
            ``alpha`` ``(B, 1, H, W)`` in [0, 1] (the tanh output mapped from [-1, 1]);
            ``fg`` ``(B, 3, H, W)`` RGB in [0, 1], the image where alpha > 0.975 and the
            network's foreground elsewhere, clipped (the official test output);
            ``fg_raw`` ``(B, 3, H, W)`` the network's foreground in RGB units, unclipped (what
            the loss trains); ``seg`` ``(B, 1, H, W)`` the segmentation cue used.
        """
        check_divisible(self, image)
        mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        rgb, plate = image * std + mean, bg * std + mean
        if seg is None:
            seg = plate_segmentation(rgb, plate)

        img_feat1 = self.model_enc1(2 * rgb - 1)
        img_feat = self.model_enc2(img_feat1)
        back_feat = self.model_enc_back(2 * plate - 1)
        seg_feat = self.model_enc_seg(2 * seg - 1)
        with_back = torch.cat([img_feat, back_feat], dim=1)
        switched = torch.cat(
            [
                self.comb_back(with_back),
                self.comb_seg(torch.cat([img_feat, seg_feat], dim=1)),
                # The official third arm reads the plate features, not the motion features.
                self.comb_multi(with_back),
            ],
            dim=1,
        )
        dec = self.model_res_dec(torch.cat([img_feat, switched], dim=1))
        alpha = (self.model_al_out(self.model_res_dec_al(dec)) + 1) / 2
        fg_feat = self.model_dec_fg1(self.model_res_dec_fg(dec))
        fg_raw = (self.model_fg_out(torch.cat([fg_feat, img_feat1], dim=1)) + 1) / 2
        fg = torch.where(alpha > _FG_FROM_IMAGE_ABOVE, rgb, fg_raw).clamp(0.0, 1.0)
        return {"alpha": alpha, "fg": fg, "fg_raw": fg_raw, "seg": seg}

    def arch_config(self) -> dict[str, Any]:
        """Plain values that rebuild this architecture: ``BASICNet(**arch_config())``."""
        return {"ngf": self.ngf, "n_blocks1": self.n_blocks1, "n_blocks2": self.n_blocks2}
