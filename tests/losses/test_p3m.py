"""Tests of the P3M-Net objective against independent NumPy implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p3m_lightning.losses.terms import (
    laplacian_kernel,
    laplacian_loss,
    laplacian_pyramid,
    transition_mask,
    trimap_classes,
)
from p3m_lightning.methods.p3m_net.loss import P3MLoss

EPS = 1e-12
HEADS = ("global_logits", "side2", "side1", "side0")


# ----------------------------------------------------------------------------- NumPy references
def np_kernel() -> np.ndarray:
    g = [np.exp(-((t - 2.0) ** 2)) for t in range(5)]
    k = np.empty((5, 5))
    for i in range(5):
        for j in range(5):
            k[i, j] = g[i] + g[j]
    return k / k.sum()


def np_filter(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Naive 5x5 correlation of a 2-D image with edge (replicate) padding."""
    h, w = img.shape
    p = np.pad(img, 2, mode="edge")
    out = np.zeros_like(img)
    for i in range(5):
        for j in range(5):
            out += k[i, j] * p[i : i + h, j : j + w]
    return out


def np_pool(img: np.ndarray) -> np.ndarray:
    """2x2 average pooling; a partial block at an odd border averages the pixels it has.

    On sides that stay even (multiples of 32 for 5 levels) this is the reference's floor pooling.
    """
    h, w = img.shape
    out = np.empty(((h + 1) // 2, (w + 1) // 2))
    for y in range(out.shape[0]):
        for x in range(out.shape[1]):
            out[y, x] = img[2 * y : 2 * y + 2, 2 * x : 2 * x + 2].mean()
    return out


def np_pyramid(img: np.ndarray, levels: int = 5) -> list[np.ndarray]:
    k = np_kernel()
    out, cur = [], img
    for _ in range(levels):
        filt = np_filter(cur, k)
        out.append(cur - filt)
        cur = np_pool(filt)
    out.append(cur)
    return out


def np_laplacian_loss(pred: np.ndarray, target: np.ndarray, levels: int = 5) -> float:
    """pred, target: (B, H, W)."""
    pyr_p = [np_pyramid(p, levels) for p in pred]
    pyr_t = [np_pyramid(t, levels) for t in target]
    total = 0.0
    for lvl in range(levels + 1):
        a = np.stack([p[lvl] for p in pyr_p])
        b = np.stack([t[lvl] for t in pyr_t])
        total += np.abs(a - b).mean()
    return total


def np_classes(trimap: np.ndarray) -> np.ndarray:
    t = np.rint(trimap)
    return np.where(t == 0, 0, np.where(t == 255, 2, 1))


def np_cross_entropy(logits: np.ndarray, classes: np.ndarray) -> float:
    """logits (B, 3, H, W), classes (B, H, W)."""
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    picked = np.take_along_axis(logp, classes[:, None], axis=1)
    return float(-picked.mean())


def np_terms(out: dict[str, np.ndarray], batch: dict[str, np.ndarray]) -> dict[str, float]:
    cls = np_classes(batch["trimap"][:, 0])
    t = (cls == 1).astype(np.float64)[:, None]
    alpha, local, fusion = batch["alpha"], out["local"], out["fusion"]
    ce = {h: np_cross_entropy(out[h], cls) for h in HEADS}
    l_global = 3 * ce["global_logits"] + ce["side2"] + ce["side1"] + ce["side0"]
    local_alpha = (np.sqrt((local - alpha) ** 2 + EPS) * t).sum() / (t.sum() + 1)
    local_lap = np_laplacian_loss((local * t)[:, 0], (alpha * t)[:, 0])
    fusion_alpha = np.sqrt((fusion - alpha) ** 2 + EPS).mean()
    fusion_lap = np_laplacian_loss(fusion[:, 0], alpha[:, 0])
    comp = fusion * batch["fg"] + (1 - fusion) * batch["bg"]
    l_comp = np.sqrt((comp - batch["image"]) ** 2 + EPS).sum() / fusion.size
    return {
        "loss_global_main": ce["global_logits"],
        "loss_global_side2": ce["side2"],
        "loss_global_side1": ce["side1"],
        "loss_global_side0": ce["side0"],
        "loss_global": l_global,
        "loss_local_alpha": local_alpha,
        "loss_local_lap": local_lap,
        "loss_local": local_alpha + local_lap,
        "loss_fusion_alpha": fusion_alpha,
        "loss_fusion_lap": fusion_lap,
        "loss_fusion": fusion_alpha + fusion_lap,
        "loss_comp": l_comp,
        "loss": l_global / 6
        + 2 * (local_alpha + local_lap)
        + 3 * (fusion_alpha + fusion_lap)
        + l_comp,
    }


# ----------------------------------------------------------------------------- fixtures
def make_case(
    b: int = 2, h: int = 32, w: int = 48, seed: int = 0
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    alpha = torch.rand(b, 1, h, w, generator=g)
    alpha[:, :, : h // 3] = 0.0
    alpha[:, :, -h // 3 :] = 1.0
    trimap = torch.full((b, 1, h, w), 128.0)
    trimap[:, :, : h // 4] = 0.0
    trimap[:, :, -h // 4 :] = 255.0
    # Bilinear-resize leftovers, including float noise next to the solid levels.
    trimap[:, :, h // 4, : w // 2] = 0.3
    trimap[:, :, h // 4, w // 2 :] = 64.7
    trimap[:, :, -h // 4 - 1, : w // 2] = 254.99998
    trimap[:, :, -h // 4 - 1, w // 2 :] = 200.2
    out = {
        "global_logits": torch.randn(b, 3, h, w, generator=g) * 2,
        "local": torch.rand(b, 1, h, w, generator=g),
        "fusion": torch.rand(b, 1, h, w, generator=g),
        "side2": torch.randn(b, 3, h, w, generator=g),
        "side1": torch.randn(b, 3, h, w, generator=g),
        "side0": torch.randn(b, 3, h, w, generator=g),
    }
    batch = {
        "image": torch.randn(b, 3, h, w, generator=g),
        "alpha": alpha,
        "trimap": trimap,
        "fg": torch.randn(b, 3, h, w, generator=g),
        "bg": torch.randn(b, 3, h, w, generator=g),
    }
    return out, batch


def to_np(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]):
    return (
        {k: v.double().numpy() for k, v in out.items()},
        {k: v.double().numpy() for k, v in batch.items()},
    )


# ----------------------------------------------------------------------------- kernel
def test_kernel_is_the_reference_additive_kernel() -> None:
    k = laplacian_kernel()
    assert k.shape == (1, 1, 5, 5) and k.dtype == torch.float32
    k2 = k[0, 0].double().numpy()
    np.testing.assert_allclose(k2, np_kernel(), rtol=1e-6)
    assert k2.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(k2, k2.T)
    np.testing.assert_array_equal(k2, k2[::-1, ::-1])
    # The reference's own construction: Gaussians summed over the last axis of an mgrid.
    grid = np.float32(np.mgrid[0:5, 0:5].T)
    ref = np.sum(np.exp((grid - 2) ** 2 / -2.0) ** 2, axis=2)
    np.testing.assert_allclose(k2, ref / ref.sum(), rtol=1e-6)
    # Not the separable product Gaussian: that one has corners ~1000x smaller than its centre.
    g = np.exp(-((np.arange(5) - 2.0) ** 2))
    product = np.outer(g, g) / np.outer(g, g).sum()
    assert np.abs(k2 - product).max() > 0.05
    assert k2[0, 0] / k2[2, 2] == pytest.approx(np.exp(-4.0), rel=1e-5)  # (2g(0))/(2g(2))


# ----------------------------------------------------------------------------- trimap classes
def test_trimap_classes() -> None:
    values = torch.tensor([0.0, 0.3, 0.6, 1.0, 2.0, 64.7, 128.0, 254.4, 254.99998, 255.0])
    expected = torch.tensor([0, 0, 1, 1, 1, 1, 1, 1, 2, 2])
    t = values.view(1, 1, 1, -1)
    got = trimap_classes(t)
    assert got.dtype == torch.long and got.shape == (1, 1, 10)
    assert torch.equal(got[0, 0], expected)
    assert torch.equal(trimap_classes(t.round().to(torch.uint8)), got)
    assert torch.equal(trimap_classes(t.bfloat16()), trimap_classes(t.bfloat16().float()))
    mask = transition_mask(t)
    assert mask.shape == t.shape and mask.dtype == torch.float32
    assert torch.equal(mask[0, 0, 0], (expected == 1).float())


# ----------------------------------------------------------------------------- laplacian
@pytest.mark.parametrize(("h", "w"), [(32, 48), (64, 32), (37, 45), (40, 40), (8, 12)])
def test_laplacian_loss_matches_numpy(h: int, w: int) -> None:
    g = torch.Generator().manual_seed(h * w)
    pred = torch.rand(2, 1, h, w, generator=g)
    target = (torch.rand(2, 1, h, w, generator=g) > 0.5).float()
    got = laplacian_loss(pred, target)
    want = np_laplacian_loss(pred[:, 0].double().numpy(), target[:, 0].double().numpy())
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_laplacian_pyramid_shapes_and_numpy_levels() -> None:
    x = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(1))
    pyr = laplacian_pyramid(x, laplacian_kernel())
    assert [p.shape[-1] for p in pyr] == [40, 20, 10, 5, 3, 2]
    for got, want in zip(pyr, np_pyramid(x[0, 0].double().numpy()), strict=True):
        np.testing.assert_allclose(got[0, 0].double().numpy(), want, atol=1e-6)


def test_laplacian_loss_is_zero_for_equal_maps() -> None:
    x = torch.rand(2, 1, 24, 24)
    assert laplacian_loss(x, x.clone()).item() == 0.0


# ----------------------------------------------------------------------------- full objective
def test_every_term_matches_numpy() -> None:
    out, batch = make_case()
    terms = P3MLoss()(out, batch)
    want = np_terms(*to_np(out, batch))
    assert set(want) <= set(terms)
    for name, value in want.items():
        assert terms[name].dtype == torch.float32, name
        assert terms[name].dim() == 0, name
        assert terms[name].item() == pytest.approx(value, rel=1e-5, abs=1e-7), name


def test_total_is_the_weighted_sum() -> None:
    out, batch = make_case(seed=3)
    weights = {"w_global": 0.5, "w_local": 1.5, "w_fusion": 0.25, "w_comp": 2.0}
    t = P3MLoss(**weights)(out, batch)
    expected = (
        0.5 * t["loss_global"]
        + 1.5 * t["loss_local"]
        + 0.25 * t["loss_fusion"]
        + 2 * t["loss_comp"]
    )
    torch.testing.assert_close(t["loss"], expected)
    d = P3MLoss()(out, batch)
    expected = d["loss_global"] / 6 + 2 * d["loss_local"] + 3 * d["loss_fusion"] + d["loss_comp"]
    torch.testing.assert_close(d["loss"], expected)
    torch.testing.assert_close(
        d["loss_global"],
        3 * d["loss_global_main"]
        + d["loss_global_side2"]
        + d["loss_global_side1"]
        + d["loss_global_side0"],
    )


def test_laplacian_levels_are_configurable() -> None:
    out, batch = make_case(seed=4)
    t = P3MLoss(laplacian_levels=2)(out, batch)
    o, b = to_np(out, batch)
    want = np_laplacian_loss(o["fusion"][:, 0], b["alpha"][:, 0], levels=2)
    assert t["loss_fusion_lap"].item() == pytest.approx(want, rel=1e-5)


def test_kernel_is_a_non_persistent_buffer() -> None:
    loss = P3MLoss()
    assert "kernel" in dict(loss.named_buffers())
    assert loss.state_dict() == {}
    out, batch = make_case(seed=5)
    ref = loss(out, batch)["loss"]
    # A bf16-true module cast rounds the buffer; the objective still uses the exact kernel.
    assert loss.to(torch.bfloat16)(out, batch)["loss"].item() == ref.item()


def _no_transition(out: dict, batch: dict) -> None:
    batch["trimap"] = torch.where(batch["trimap"] > 127, 255.0, 0.0)


def _all_background(out: dict, batch: dict) -> None:
    batch["alpha"].zero_()
    batch["trimap"].zero_()


@pytest.mark.parametrize(
    ("b", "h", "w", "edit"),
    [
        (2, 32, 48, _no_transition),
        (2, 32, 48, _all_background),
        (1, 32, 32, None),
        (2, 40, 40, None),
        (1, 37, 45, _no_transition),
        (1, 6, 10, None),
    ],
)
def test_edge_cases_are_finite(b: int, h: int, w: int, edit) -> None:
    out, batch = make_case(b, h, w, seed=6)
    if edit is not None:
        edit(out, batch)
    terms = P3MLoss()(out, batch)
    for name, value in terms.items():
        assert torch.isfinite(value), name
    if edit is not None:
        # No transition pixel: the +1 in the denominator makes the transition terms exactly 0.
        assert terms["loss_local_alpha"].item() == 0.0
        assert terms["loss_local_lap"].item() == 0.0
    want = np_terms(*to_np(out, batch))
    assert terms["loss"].item() == pytest.approx(want["loss"], rel=1e-5)


def test_gradients_reach_every_output() -> None:
    out, batch = make_case(seed=7)
    out = {k: t.clone().requires_grad_(True) for k, t in out.items()}
    P3MLoss()(out, batch)["loss"].backward()
    for name, t in out.items():
        assert t.grad is not None, name
        assert torch.isfinite(t.grad).all(), name
        assert t.grad.abs().sum() > 0, name


def test_gradients_are_finite_at_a_perfect_prediction() -> None:
    out, batch = make_case(b=1, seed=8)
    alpha = batch["alpha"]
    out = {**out, "local": alpha.clone().requires_grad_(True), "fusion": alpha.clone()}
    P3MLoss()(out, batch)["loss"].backward()
    assert torch.isfinite(out["local"].grad).all()


def test_bf16_autocast_gives_a_float32_loss() -> None:
    out, batch = make_case(seed=9)
    ref = P3MLoss()(out, batch)["loss"]
    out16 = {k: t.bfloat16().requires_grad_(True) for k, t in out.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = P3MLoss()(out16, batch)["loss"]
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(t.grad).all() for t in out16.values())
    # Only the bf16 rounding of the predictions separates it from the float32 loss.
    assert loss.item() == pytest.approx(ref.item(), rel=2e-2)


def test_mismatched_shapes_are_reported() -> None:
    out, batch = make_case()
    batch["alpha"] = batch["alpha"][:, 0]
    with pytest.raises(ValueError, match="alpha"):
        P3MLoss()(out, batch)


def test_missing_batch_key_is_reported() -> None:
    out, batch = make_case()
    del batch["fg"]
    with pytest.raises(KeyError, match="fg"):
        P3MLoss()(out, batch)
