"""The P3M-10k matting metrics: golden parity, hand-computed cases, MattingMetrics reduction."""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from p3m_lightning.metrics import (
    METRIC_NAMES,
    MattingMetrics,
    _alpha_array,
    compute_matting_metrics,
    connectivity_error,
    face_region_errors,
    fg_bg_errors,
    grad_error,
    trimap_errors,
    whole_image_errors,
)

GOLDEN = Path(__file__).parent / "data" / "metrics_cases.npz"
CASES = ("case0", "case1", "case2")


@cache
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        return dict(data)


def golden_case(case: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    data = golden()
    return data[f"{case}_pred"], data[f"{case}_gt"], data[f"{case}_trimap"]


@cache
def golden_metrics(case: str) -> dict[str, float]:
    return compute_matting_metrics(*golden_case(case))


def soft_case(seed: int, shape: tuple[int, int] = (48, 64)) -> tuple[np.ndarray, ...]:
    """A float32 prediction, a float64 8-bit alpha (k / 255) and its trimap."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot((yy - shape[0] / 2) / (shape[0] / 3), (xx - shape[1] / 2) / (shape[1] / 3))
    alpha8 = np.round(np.clip((1.2 - r) / 0.4, 0, 1) * 255).astype(np.uint8)
    pred = np.clip(alpha8 / 255 + rng.normal(0, 0.15, shape), 0, 1).astype(np.float32)
    trimap = np.full(shape, 128, np.uint8)
    trimap[alpha8 == 0] = 0
    trimap[alpha8 == 255] = 255
    return pred, alpha8 / 255.0, trimap


@pytest.mark.parametrize("metric", METRIC_NAMES)
@pytest.mark.parametrize("case", CASES)
def test_golden_parity(case: str, metric: str) -> None:
    expected = float(golden()[f"{case}_ref_{metric}"])
    assert golden_metrics(case)[metric] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_individual_functions_match_golden(case: str) -> None:
    pred, alpha, trimap = golden_case(case)
    values = {
        **whole_image_errors(pred, alpha),
        **trimap_errors(pred, alpha, trimap),
        **fg_bg_errors(pred, alpha, trimap),
        "grad": grad_error(pred, alpha),
        "conn": connectivity_error(pred, alpha),
    }
    assert values.keys() == set(METRIC_NAMES)
    for name, value in values.items():
        assert value == pytest.approx(float(golden()[f"{case}_ref_{name}"]), rel=1e-5), name


def test_keys_and_types() -> None:
    values = compute_matting_metrics(*soft_case(0))
    assert tuple(values) == METRIC_NAMES
    assert all(type(v) is float and np.isfinite(v) for v in values.values())


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 2), (40, 33)])
def test_grad_matches_scipy(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    pred, alpha = rng.random(shape).astype(np.float32), rng.random(shape)
    magnitudes = []
    for x in (pred, alpha):
        gx = gaussian_filter(x, 1.4, order=(1, 0), output=np.float32)
        gy = gaussian_filter(x, 1.4, order=(0, 1), output=np.float32)
        magnitudes.append(np.sqrt(gx**2 + gy**2))
    expected = np.sum(np.square(magnitudes[0] - magnitudes[1])) / 10
    assert grad_error(pred, alpha) == pytest.approx(float(expected), rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_conn_matches_published_algorithm(seed: int) -> None:
    pytest.importorskip("skimage")
    from p3m_lightning.bench.metrics import published_connectivity_error

    pred, alpha, _ = soft_case(seed, (40 + seed, 56))
    assert connectivity_error(pred, alpha) == pytest.approx(
        published_connectivity_error(pred, alpha), rel=1e-9
    )


def test_perfect_prediction_scores_zero() -> None:
    rng = np.random.default_rng(2)
    # Multiples of 1/64 are exact in float32, so the float32 pred equals alpha to the bit.
    alpha = np.round(np.clip(rng.normal(0.5, 0.6, (24, 30)), 0, 1) * 64) / 64
    trimap = np.where(alpha == 0, 0, np.where(alpha == 1, 255, 128)).astype(np.uint8)
    assert compute_matting_metrics(alpha, alpha, trimap) == dict.fromkeys(METRIC_NAMES, 0.0)
    values = compute_matting_metrics(alpha.astype(np.float32), alpha, trimap)
    # Except Conn, which the reference computes as 1 - d in float32 for pred and in float64 for
    # alpha: their rounding differs, so even a perfect float32 prediction scores a few 1e-9.
    assert values.pop("conn") == pytest.approx(0.0, abs=1e-7)
    assert values == dict.fromkeys(values, 0.0)


def test_constant_offset_by_hand() -> None:
    pred = np.full((10, 20), 0.5, np.float32)
    alpha = np.full((10, 20), 0.25)
    values = compute_matting_metrics(pred, alpha, np.full((10, 20), 128, np.uint8))
    expected = {
        "sad": 200 * 0.25 / 1000,
        "mse": 0.0625,
        "mad": 0.25,
        "sad_trimap": 200 * 0.25 / 1000,
        "mse_trimap": 0.0625,
        "mad_trimap": 0.25,
        "sad_fg": 0.0,
        "sad_bg": 0.0,
        # Flat images have no gradient; and both stay above every threshold up to 0.2 and below
        # the next, so every pixel keeps level 1 and d <= 0.
        "grad": 0.0,
        "conn": 0.0,
    }
    assert values == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_trimap_forcing_by_hand() -> None:
    pred = np.full((4, 4), 0.5, np.float32)
    alpha = np.full((4, 4), 0.25)
    trimap = np.full((4, 4), 128, np.uint8)
    trimap[0], trimap[1] = 0, 255
    values = compute_matting_metrics(pred, alpha, trimap)
    # Forced errors: row 0 -> 0 (0.25 each), row 1 -> 1 (0.75 each), 8 unknown pixels 0.25.
    assert values["sad_trimap"] == pytest.approx((4 * 0.25 + 4 * 0.75 + 8 * 0.25) / 1000)
    assert values["mse_trimap"] == pytest.approx((4 * 0.0625 + 4 * 0.5625 + 8 * 0.0625) / 8)
    assert values["mad_trimap"] == pytest.approx((4 * 0.25 + 4 * 0.75 + 8 * 0.25) / 8)
    # FG and BG use the unforced prediction.
    assert values["sad_fg"] == pytest.approx(4 * 0.25 / 1000)
    assert values["sad_bg"] == pytest.approx(4 * 0.25 / 1000)


def test_trimap_without_128_divides_by_other_values() -> None:
    pred = np.full((4, 4), 0.5, np.float32)
    alpha = np.full((4, 4), 0.25)
    trimap = np.zeros((4, 4), np.uint8)
    trimap[2:] = 100  # neither 0 nor 255: the published fallback counts these 8 pixels
    values = trimap_errors(pred, alpha, trimap)
    assert values["mse_trimap"] == pytest.approx((8 * 0.0625 + 8 * 0.0625) / 8)
    assert values["mad_trimap"] == pytest.approx((8 * 0.25 + 8 * 0.25) / 8)


def test_trimap_of_only_known_pixels_is_finite() -> None:
    pred = np.full((4, 6), 0.5, np.float32)
    alpha = np.full((4, 6), 0.5)
    trimap = np.zeros((4, 6), np.uint8)
    trimap[:, 3:] = 255
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = compute_matting_metrics(pred, alpha, trimap)
    # The divisor is clamped to 1: MSE and MAD of the trimap are the plain sums.
    assert values["mse_trimap"] == pytest.approx(24 * 0.25)
    assert values["mad_trimap"] == pytest.approx(24 * 0.5)
    assert all(np.isfinite(v) for v in values.values())


def _two_squares(first: str) -> tuple[np.ndarray, np.ndarray]:
    """Two 2x2 squares whose intersections tie in area for thresholds up to 0.5.

    Square A: pred 0.95, alpha 1. Square B: pred 1, alpha 0.5. ``first`` is the one met first in
    raster order.
    """
    pred = np.zeros((5, 9), np.float32)
    alpha = np.zeros((5, 9))
    left, right = np.s_[1:3, 1:3], np.s_[1:3, 5:7]
    a, b = (left, right) if first == "A" else (right, left)
    pred[a], alpha[a] = 0.95, 1.0
    pred[b], alpha[b] = 1.0, 0.5
    return pred, alpha


@pytest.mark.parametrize(("first", "expected"), [("A", 0.002), ("B", 0.0022)])
def test_conn_ties_go_to_the_first_component_in_raster_order(first: str, expected: float) -> None:
    # Winner A at t <= 0.5: B gets l = 0 (|phi| = |0 - 0.5| on 4 pixels), A keeps l = 1 -> 2.0.
    # Winner B: A gets l = 0 (|0.05 - 0| each), B gets l = 0.5 (|0.5 - 1| each) -> 2.2.
    pred, alpha = _two_squares(first)
    assert connectivity_error(pred, alpha) == pytest.approx(expected, rel=1e-6)


def test_conn_keeps_the_arange_threshold_artefact() -> None:
    # alpha = 153/255 is exactly 0.6 in float64, below arange's t_6 = 0.6000000000000001: the top
    # row leaves omega at t_6 and gets l = t_5 = 0.5, so |phi(1) - phi(0.6)| = |0.5 - 1| on 6
    # pixels. Compared at 0.6 (or with float32's 0.6 > 0.6) it would get l = 0.6 and give 0.4.
    pred = np.ones((6, 6), np.float32)
    alpha = np.ones((6, 6))
    alpha[0] = 153 / 255
    assert connectivity_error(pred, alpha) == pytest.approx(6 * 0.5 / 1000, rel=1e-6)
    assert connectivity_error(pred, alpha.astype(np.float32)) == pytest.approx(6 * 0.4 / 1000)


@pytest.mark.parametrize(
    ("shapes", "match"),
    [
        (((4, 5), (4, 6), (4, 5)), r"alpha \(4, 6\)"),
        (((4, 5), (4, 5), (5, 4)), r"trimap \(5, 4\)"),
        (((2, 4, 5), (2, 4, 5), (2, 4, 5)), r"pred \(2, 4, 5\)"),
    ],
)
def test_shape_mismatch_raises(shapes: tuple[tuple[int, ...], ...], match: str) -> None:
    pred, alpha, trimap = (
        np.zeros(s, dtype) for s, dtype in zip(shapes, ("f4", "f8", "u1"), strict=True)
    )
    with pytest.raises(ValueError, match=match):
        compute_matting_metrics(pred, alpha, trimap)


def test_integer_alpha_raises() -> None:
    with pytest.raises(ValueError, match="alpha must be floating"):
        compute_matting_metrics(np.zeros((3, 3)), np.zeros((3, 3), np.uint8), np.zeros((3, 3)))


def _tensors(case: tuple[np.ndarray, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pred, alpha, trimap = case
    # alpha as a data loader gives it: 8-bit divided by 255 in float32.
    alpha32 = torch.from_numpy(np.round(alpha * 255).astype(np.uint8)).float() / 255
    return torch.from_numpy(pred), alpha32, torch.from_numpy(trimap)


def _mean_of_cases(cases: list[tuple[np.ndarray, ...]]) -> dict[str, float]:
    per_image = [compute_matting_metrics(*case) for case in cases]
    return {name: float(np.mean([v[name] for v in per_image])) for name in METRIC_NAMES}


def _as_floats(values: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float(value) for name, value in values.items()}


def test_matting_metrics_mean_over_images_of_different_sizes() -> None:
    cases = [soft_case(s, shape) for s, shape in enumerate([(30, 40), (25, 50), (40, 32)])]
    metric = MattingMetrics()
    metric.update(*(list(t) for t in zip(*map(_tensors, cases), strict=True)))
    assert int(metric.num_images) == 3
    assert _as_floats(metric.compute()) == pytest.approx(_mean_of_cases(cases), rel=1e-12)


def test_matting_metrics_accepts_batches_and_single_images() -> None:
    cases = [soft_case(s) for s in range(3)]
    preds, alphas, trimaps = (torch.stack(t) for t in zip(*map(_tensors, cases), strict=True))
    batched = MattingMetrics()
    batched.update(preds[:2, None], alphas[:2, None], trimaps[:2, None].float())
    batched.update(preds[2], (alphas[2] * 255).round().to(torch.uint8), trimaps[2])
    assert _as_floats(batched.compute()) == pytest.approx(_mean_of_cases(cases), rel=1e-12)


def test_matting_metrics_snaps_float32_alpha_to_k_over_255() -> None:
    pred = torch.ones(6, 6)
    alpha = torch.ones(6, 6)
    alpha[0] = 153 / 255  # float32, just above 0.6
    metric = MattingMetrics()
    metric.update(pred, alpha, torch.full((6, 6), 128, dtype=torch.uint8))
    assert float(metric.compute()["conn"]) == pytest.approx(6 * 0.5 / 1000, rel=1e-6)


def test_matting_metrics_rejects_mismatched_counts() -> None:
    metric = MattingMetrics()
    with pytest.raises(ValueError, match="2, 1 and 1 images"):
        metric.update(torch.zeros(2, 1, 4, 4), torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))


def _rank_states(**kwargs: object) -> tuple[MattingMetrics, MattingMetrics, list]:
    """Rank 0 scores one image, rank 1 two others."""
    cases = [soft_case(s, (24 + 4 * s, 36)) for s in range(3)]
    rank0, rank1 = MattingMetrics(**kwargs), MattingMetrics()
    rank0.update(*_tensors(cases[0]))
    for case in cases[1:]:
        rank1.update(*_tensors(case))
    return rank0, rank1, cases


def test_merge_state_is_a_mean_over_images_not_over_processes() -> None:
    rank0, rank1, cases = _rank_states()
    rank0.merge_state(rank1)
    assert _as_floats(rank0.compute()) == pytest.approx(_mean_of_cases(cases), rel=1e-12)


def test_distributed_sync_sums_states() -> None:
    def all_gather(tensor: torch.Tensor, group: object = None) -> list[torch.Tensor]:
        name = next(n for n, state in rank0.metric_state.items() if state is tensor)
        return [tensor, rank1.metric_state[name]]

    rank0, rank1, cases = _rank_states(
        dist_sync_fn=all_gather, distributed_available_fn=lambda: True
    )
    assert _as_floats(rank0.compute()) == pytest.approx(_mean_of_cases(cases), rel=1e-12)
    # compute() undoes the synchronisation: the local state is rank 0's alone again.
    assert int(rank0.num_images) == 1


def test_face_region_errors_by_hand() -> None:
    # 4x5 image; the face is the 2x2 block at rows 1-2, cols 1-2 (4 pixels).
    pred = np.zeros((4, 5), np.float32)
    alpha = np.zeros((4, 5))
    mask = np.zeros((4, 5), np.uint8)
    mask[1:3, 1:3] = 255
    pred[1, 1], pred[1, 2] = 0.5, 0.25  # face errors 0.5, 0.25, 0, 0
    pred[0, 0] = 1.0  # outside the face: ignored
    values = face_region_errors(pred, alpha, mask)
    assert values == pytest.approx(
        {"sad_face": 0.75 / 1000, "mse_face": (0.25 + 0.0625) / 4, "mad_face": 0.75 / 4}
    )


def test_face_region_errors_empty_mask_and_shape_mismatch() -> None:
    pred, alpha = np.zeros((3, 3), np.float32), np.zeros((3, 3))
    assert face_region_errors(pred, alpha, np.zeros((3, 3), np.uint8)) is None
    with pytest.raises(ValueError, match="face_mask has shape"):
        face_region_errors(pred, alpha, np.ones((3, 4), np.uint8))


def test_matting_metrics_face_keys_absent_without_masks() -> None:
    metric = MattingMetrics()
    metric.update(*_tensors(soft_case(0)))
    assert set(metric.compute()) == set(METRIC_NAMES)
    # A mask that marks no pixel scores nothing either.
    metric.update(*_tensors(soft_case(1)), torch.zeros(48, 64, dtype=torch.uint8))
    assert set(metric.compute()) == set(METRIC_NAMES)


def test_matting_metrics_face_mean_over_masked_images_only() -> None:
    # Image 0: face error 0.2 on 2 pixels; image 1: no mask; image 2: face error 0.6 on 1 pixel.
    preds = [torch.zeros(2, 2) for _ in range(3)]
    alphas = [torch.zeros(2, 2, dtype=torch.uint8) for _ in range(3)]
    trimaps = [torch.full((2, 2), 128, dtype=torch.uint8) for _ in range(3)]
    preds[0][0] = 0.2
    preds[2][1, 1] = 0.6
    masks = [
        torch.tensor([[1, 1], [0, 0]], dtype=torch.uint8),
        None,
        torch.tensor([[0.0, 0.0], [0.0, 255.0]]),  # a float mask read as 0/255
    ]
    metric = MattingMetrics()
    metric.update(preds, alphas, trimaps, masks)
    out = _as_floats(metric.compute())
    assert int(metric.num_images) == 3 and int(metric.num_face_images) == 2
    assert out["sad_face"] == pytest.approx((0.4 + 0.6) / 1000 / 2, rel=1e-6)
    assert out["mad_face"] == pytest.approx((0.2 + 0.6) / 2, rel=1e-6)
    assert out["mse_face"] == pytest.approx((0.04 + 0.36) / 2, rel=1e-6)
    # The ten metrics still average over all three images.
    assert out["sad"] == pytest.approx((0.4 + 0.0 + 0.6) / 1000 / 3, rel=1e-6)


def test_matting_metrics_face_states_sum_across_processes() -> None:
    pred, alpha, trimap = _tensors(soft_case(2, (8, 8)))
    mask = torch.zeros(8, 8, dtype=torch.uint8)
    mask[2:6, 2:6] = 1
    rank0, rank1, single = MattingMetrics(), MattingMetrics(), MattingMetrics()
    rank0.update(pred, alpha, trimap)  # rank 0 has no face masks
    rank1.update(pred, alpha, trimap, mask)
    single.update([pred, pred], [alpha, alpha], [trimap, trimap], [None, mask])
    rank0.merge_state(rank1)
    assert _as_floats(rank0.compute()) == pytest.approx(_as_floats(single.compute()), rel=1e-12)
    expected = face_region_errors(pred.numpy(), _alpha_array(alpha), mask.numpy())
    assert _as_floats(single.compute())["mad_face"] == pytest.approx(expected["mad_face"])


def test_matting_metrics_rejects_mismatched_face_mask_count() -> None:
    metric = MattingMetrics()
    with pytest.raises(ValueError, match="face_mask holds 1 images, pred 2"):
        metric.update(
            torch.zeros(2, 1, 4, 4),
            torch.zeros(2, 1, 4, 4),
            torch.zeros(2, 1, 4, 4),
            torch.zeros(1, 1, 4, 4),
        )
