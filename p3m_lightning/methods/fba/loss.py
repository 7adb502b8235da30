"""The FBA Matting objective, after the paper (Forte & Pitie 2020, Sec. "Losses") and the
training notes of the official README; the official repository has no training code and
mmagic has no FBA recipe. The terms supervise the decoder's maps before the F, B, alpha fusion
(``FBANet``'s ``*_raw``): the fusion is inference-only (maintainer, MarcoForte/FBA_Matting
issue #38). The term weights are configurable and default to 1 (our choice: the paper's
weights could not be read here), with the alpha gradient term off (the README: "Gradient loss
is not needed").

All colours here are RGB in [0, 1]: the batch's ImageNet-normalised ``image``, ``fg``, ``bg``
are converted back, since FBANet predicts F and B in [0, 1]. Every mean runs over the whole
image (the README: the F/B losses on "the entire image or at least the unknown region").

Alpha terms (on ``alpha_raw``):
- ``loss_alpha_l1``: mean ``|a' - a|``.
- ``loss_alpha_comp``: mean ``|a' F + (1 - a') B - I|`` with the true F, B.
- ``loss_alpha_grad``: mean ``|dx a' - dx a| + |dy a' - dy a|`` (forward differences).
- ``loss_alpha_lap``: Laplacian-pyramid L1 (5 levels, 5x5 binomial kernel).

F/B terms (on ``fg_raw``, ``bg_raw``):
- ``loss_fb_l1``: mean ``|F' - F| + |B' - B|``.
- ``loss_fb_comp``: mean ``|a F' + (1 - a) B' - I|`` with the true alpha.
- ``loss_fb_excl``: exclusion, mean ``|dx F'| |dx B'| + |dy F'| |dy B'|``: F and B should
  not share edges.
- ``loss_fb_lap``: Laplacian-pyramid L1 of F' and of B'.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from p3m_lightning.losses.terms import laplacian_loss
from p3m_lightning.normalization import to_rgb01

__all__ = [
    "FBALoss",
    "binomial_kernel",
    "exclusion_loss",
    "gradient_loss",
]

_ALPHA_TERMS = ("alpha_l1", "alpha_comp", "alpha_grad", "alpha_lap")
_FB_TERMS = ("fb_l1", "fb_comp", "fb_excl", "fb_lap")


def binomial_kernel() -> Tensor:
    """The 5x5 binomial (Gaussian) kernel ``[1, 4, 6, 4, 1]^T [1, 4, 6, 4, 1] / 256``."""
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    return (k[:, None] * k[None, :] / 256.0).view(1, 1, 5, 5)


def _dx(x: Tensor) -> Tensor:
    return x[..., :, 1:] - x[..., :, :-1]


def _dy(x: Tensor) -> Tensor:
    return x[..., 1:, :] - x[..., :-1, :]


def gradient_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean L1 between forward-difference gradients (x and y terms summed)."""
    return (_dx(pred) - _dx(target)).abs().mean() + (_dy(pred) - _dy(target)).abs().mean()


def exclusion_loss(fg: Tensor, bg: Tensor) -> Tensor:
    """Mean product of gradient magnitudes of F and B (x and y terms summed)."""
    return (_dx(fg).abs() * _dx(bg).abs()).mean() + (_dy(fg).abs() * _dy(bg).abs()).mean()


class FBALoss(nn.Module):
    """Weighted sum of the FBA alpha and F/B terms (see the module docstring).

    Args:
        weights: per-term weights by name (``alpha_l1``, ``alpha_comp``, ``alpha_grad``,
            ``alpha_lap``, ``fb_l1``, ``fb_comp``, ``fb_excl``, ``fb_lap``); unnamed terms
            weigh 1 except ``alpha_grad`` (0).
        laplacian_levels: band-pass levels of the Laplacian terms.
    """

    kernel: Tensor

    def __init__(
        self, weights: Mapping[str, float] | None = None, laplacian_levels: int = 5
    ) -> None:
        super().__init__()
        known = _ALPHA_TERMS + _FB_TERMS
        unknown = sorted(set(weights or {}) - set(known))
        if unknown:
            raise ValueError(f"FBALoss: unknown term weights {unknown}; choose from {list(known)}.")
        self.weights = {name: 1.0 for name in known} | {"alpha_grad": 0.0} | dict(weights or {})
        self.laplacian_levels = laplacian_levels
        self.register_buffer("kernel", binomial_kernel(), persistent=False)

    def forward(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """Compute every term.

        Args:
            outputs: ``alpha_raw`` ``(B, 1, H, W)``, ``fg_raw``, ``bg_raw`` ``(B, 3, H, W)``,
                all in [0, 1]: ``FBANet``'s maps before the fusion.
            batch: ``image``, ``fg``, ``bg`` ``(B, 3, H, W)`` ImageNet-normalised, ``alpha``
                ``(B, 1, H, W)`` in [0, 1].

        Returns:
            ``loss`` (weighted total) and the unweighted ``loss_<term>``: scalar float32.
        """
        for key in ("image", "alpha", "fg", "bg"):
            if key not in batch:
                raise KeyError(
                    f"FBALoss needs batch key {key!r} (the datamodule must provide fg and bg)."
                )
        for key in ("alpha_raw", "fg_raw", "bg_raw"):
            if key not in outputs:
                raise KeyError(f"FBALoss needs the output {key!r} (FBANet); got {sorted(outputs)}.")
        kernel, levels = self.kernel.float(), self.laplacian_levels
        with torch.autocast(device_type=batch["alpha"].device.type, enabled=False):
            a_hat = outputs["alpha_raw"].float()
            f_hat, b_hat = outputs["fg_raw"].float(), outputs["bg_raw"].float()
            a = batch["alpha"].float()
            image, f, b = to_rgb01(batch["image"]), to_rgb01(batch["fg"]), to_rgb01(batch["bg"])
            terms = {
                "alpha_l1": (a_hat - a).abs().mean(),
                "alpha_comp": (a_hat * f + (1 - a_hat) * b - image).abs().mean(),
                "alpha_grad": gradient_loss(a_hat, a),
                "alpha_lap": laplacian_loss(a_hat, a, levels, kernel),
                "fb_l1": (f_hat - f).abs().mean() + (b_hat - b).abs().mean(),
                "fb_comp": (a * f_hat + (1 - a) * b_hat - image).abs().mean(),
                "fb_excl": exclusion_loss(f_hat, b_hat),
                "fb_lap": laplacian_loss(f_hat, f, levels, kernel)
                + laplacian_loss(b_hat, b, levels, kernel),
            }
            out = {f"loss_{name}": value for name, value in terms.items()}
            out["loss"] = sum(self.weights[name] * value for name, value in terms.items())
        return out

    def extra_repr(self) -> str:
        return f"weights={self.weights}, laplacian_levels={self.laplacian_levels}"
