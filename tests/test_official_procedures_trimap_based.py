"""The trimap-based methods' test procedures against their official test scripts.

``tests/data/<method>_procedure.npz`` hold the mattes the official scripts produced on the
photos and trimaps of ``tests/data/trimap_procedure_inputs.npz`` with the golden-recipe
weights (``tests/data/README.md``): the float alpha before the PNG (``sK_alpha``) and the
8-bit PNG its figures are computed from (``sK_alpha_png``). Here the project's own network,
filled by the same recipe, runs through the method's default strategy.
"""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from p3m_lightning.data.transforms import normalise_image
from p3m_lightning.inference import InferenceStrategy, quantize
from p3m_lightning.methods.fba.inference import wrap_to_uint8
from p3m_lightning.methods.gca.network import FOREGROUND_FROM, GCANet, trimap_one_hot
from p3m_lightning.methods.indexnet.inference import nearest_indices
from p3m_lightning.models.registry import ARCHITECTURES, build_architecture
from p3m_lightning.strategies import build_strategy
from tests.conftest import DATA, golden_tensor

TRIMAP_BASED = {"indexnet": 32, "gca": 32, "fba": 8, "dim": 32, "alphagan": 16}
"""The trimap-based methods and their networks' ``input_divisor``."""

TOLERANCE = {
    # method: (max abs, mean abs) of the float alpha. Measured at 1 and 2 threads: IndexNet
    # 1.5e-5 / 2.1e-7 (torch's bicubic against OpenCV's), GCA 4.5e-7 / 2.2e-8, DIM 4.0e-4 /
    # 1.7e-7 (the loaders' normalisation against mmagic's), FBA 1.5e-4 / 2.3e-6 (weight
    # standardisation in the forward pass against once, in place).
    "indexnet": (1e-4, 2e-6),
    "gca": (1e-5, 2e-7),
    "dim": (2e-3, 2e-6),
    "fba": (1e-3, 2e-5),
}
PNG_OFF_BY_ONE = {
    # method: pixels of the 8-bit matte allowed one level off (none more). Measured at 1 and 2
    # threads: IndexNet 3, GCA 2, DIM 4, FBA 54 (of 83,583 / 60,000 pixels); the official FBA
    # matte itself moves by 15-35 pixels between 1 and 2 threads.
    "indexnet": 20,
    "gca": 20,
    "dim": 20,
    "fba": 250,
}
PROBE_LEVELS = (1, 40, 84, 85, 100, 127, 129, 160, 169, 170, 200, 254)
"""Soft trimap levels, in 6x6 squares at rows 3-8, columns 4 + 10 i (here and in the vectors)."""
PREDICTION = 0.3


def strategies(method: str) -> tuple[InferenceStrategy, InferenceStrategy]:
    """``method``'s default strategy, and the same without quantisation."""
    default = build_strategy(ARCHITECTURES[method].default_strategy)
    return default, build_strategy({"name": default.name, **default.params(), "quantize": None})


def recipe_net(method: str) -> nn.Module:
    """``method``'s network at full size, every tensor filled by the golden recipe."""
    net = build_architecture(method)
    state = {
        name: golden_tensor(name, list(t.shape), str(t.dtype).removeprefix("torch."))
        for name, t in net.state_dict().items()
    }
    if method == "indexnet":
        # With the plain recipe IndexNet's raw regression stays under 0 (alpha 0 on the whole
        # unknown band); its last conv (1 -> 1, no bias) scaled by -4 spreads it over [0, 1].
        state["pred.1.weight"] = state["pred.1.weight"] * -4.0
    net.load_state_dict(state, strict=True)
    return net.eval()


def photo_inputs(image: np.ndarray, trimap: np.ndarray) -> dict[str, Tensor]:
    """The evaluation loader's tensors for an 8-bit RGB photo and trimap."""
    return {
        "image": torch.from_numpy(normalise_image(image))[None],
        "trimap": torch.from_numpy(trimap.astype(np.float32))[None, None],
    }


def probe(alpha: np.ndarray, level_index: int) -> np.ndarray:
    """The 6x6 square of ``PROBE_LEVELS[level_index]`` on the top rows."""
    return alpha[3:9, 4 + 10 * level_index : 10 + 10 * level_index]


def probe_trimap() -> np.ndarray:
    """40x130 uint8: the ``PROBE_LEVELS`` squares on 0, a 128 band (rows 14-19), 255 from
    row 26."""
    trimap = np.zeros((40, 130), np.uint8)
    for i, level in enumerate(PROBE_LEVELS):
        probe(trimap, i)[:] = level
    trimap[14:20] = 128
    trimap[26:] = 255
    return trimap


def expected_by_level(rule: str) -> dict[int, float]:
    """Alpha per trimap level under an official script's rule, ``PREDICTION`` where the
    network's prediction is kept."""
    levels = (0, 128, 255, *PROBE_LEVELS)
    if rule == "indexnet":  # the prediction only at 128; any other level k is k / 255
        return {k: PREDICTION if k == 128 else k / 255 for k in levels}
    if rule == "gca":  # under 85 background, 170 or over foreground
        return {k: 0.0 if k < 85 else 1.0 if k >= 170 else PREDICTION for k in levels}
    # FBA, mmagic's DIM (and AlphaGAN here): only 0 and 255 are known.
    return {k: 0.0 if k == 0 else 1.0 if k == 255 else PREDICTION for k in levels}


class ConstantNet(nn.Module):
    """A trimap-based network predicting ``PREDICTION`` everywhere, unguided: as ``alpha``,
    IndexNet's ``alpha_raw`` and FBA's fused alpha (``from_encodings``)."""

    inputs: ClassVar[tuple[str, ...]] = ("image", "trimap")

    def __init__(self, input_divisor: int) -> None:
        super().__init__()
        self.input_divisor = input_divisor

    def forward(self, image: Tensor, trimap: Tensor) -> dict[str, Tensor]:
        alpha = torch.full_like(trimap, PREDICTION)
        return {"alpha": alpha, "alpha_raw": alpha}

    def from_encodings(
        self, image: Tensor, rgb: Tensor, two_chan: Tensor, clicks: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        return torch.full_like(rgb[:, :1], PREDICTION), rgb, rgb


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    with np.load(DATA / "trimap_procedure_inputs.npz") as data:
        return dict(data)


@pytest.fixture(scope="module")
def probe_batch() -> dict[str, Tensor]:
    photo = np.random.default_rng(0).integers(0, 256, (40, 130, 3), dtype=np.uint8)
    return photo_inputs(photo, probe_trimap())


@pytest.mark.slow
@pytest.mark.parametrize("size", ["s0", "s1"])  # 251x333, 300x200
@pytest.mark.parametrize("method", ["indexnet", "gca", "dim", "fba"])
def test_default_strategy_reproduces_the_official_matte(
    inputs: dict[str, np.ndarray], method: str, size: str
) -> None:
    with np.load(DATA / f"{method}_procedure.npz") as data:
        official, png = data[f"{size}_alpha"], data[f"{size}_alpha_png"]
    default, unquantised = strategies(method)
    batch = photo_inputs(inputs[f"{size}_image"], inputs[f"{size}_trimap"])
    with torch.inference_mode():
        alpha = unquantised(recipe_net(method), batch)
    diff = np.abs(alpha.numpy().astype(np.float64) - official)
    max_abs, mean_abs = TOLERANCE[method]
    assert diff.max() < max_abs and diff.mean() < mean_abs, (diff.max(), diff.mean())
    # The strategies quantise last (test_default_strategy_quantises_last).
    scaled = quantize(alpha, default.quantize).double().numpy() * 255
    levels = np.rint(scaled)
    assert np.abs(scaled - levels).max() < 1e-4  # 8-bit levels, read back as level / 255
    off = np.abs(levels - png)
    assert off.max() <= 1 and (off > 0).sum() <= PNG_OFF_BY_ONE[method], (off > 0).sum()


@pytest.mark.parametrize("method", list(TRIMAP_BASED))
def test_default_strategy_quantises_last(method: str, probe_batch: dict[str, Tensor]) -> None:
    default, unquantised = strategies(method)
    net = ConstantNet(TRIMAP_BASED[method])
    with torch.inference_mode():
        matte = default(net, probe_batch)
        alpha = unquantised(net, probe_batch)
    assert torch.equal(matte, quantize(alpha, default.quantize))
    if default.quantize is not None:
        # 0.3 is 76.5 levels (a little over in float32): floor 76, round 77.
        level = 76 if default.quantize == "floor" else 77
        assert matte[16, 0].item() * 255 == pytest.approx(level, abs=1e-4)


def test_official_quantisation_is_each_strategys_default() -> None:
    """IndexNet's and GCA's scripts write ``astype(np.uint8)``, FBA's ``cv2.imwrite`` and
    mmagic's DIM round; AlphaGAN has no official script."""
    quantisation = {method: strategies(method)[0].quantize for method in TRIMAP_BASED}
    assert quantisation == {
        "indexnet": "floor",
        "gca": "floor",
        "fba": "round",
        "dim": "round",
        "alphagan": None,
    }


@pytest.mark.parametrize(
    ("method", "rule"),
    [("indexnet", "indexnet"), ("gca", "gca"), ("fba", "fba"), ("dim", "dim"), ("alphagan", "dim")],
)
def test_default_strategy_applies_the_official_soft_level_rule(
    method: str, rule: str, probe_batch: dict[str, Tensor]
) -> None:
    with torch.inference_mode():
        alpha = strategies(method)[1](ConstantNet(TRIMAP_BASED[method]), probe_batch).numpy()
    trimap = probe_trimap()
    found = {k: float(alpha[trimap == k].mean()) for k in (0, 128, 255)}
    for i, level in enumerate(PROBE_LEVELS):
        assert np.ptp(probe(alpha, i)) < 1e-6, level
        found[level] = float(probe(alpha, i).mean())
    assert found == pytest.approx(expected_by_level(rule), abs=1e-6)


@pytest.mark.parametrize("method", ["indexnet", "gca", "dim", "fba"])
def test_official_mattes_follow_the_soft_level_rule(
    method: str, inputs: dict[str, np.ndarray]
) -> None:
    """The rule above, read from the official scripts' own mattes at the probe squares: the
    levels a rule imposes, and where the prediction is kept, not another rule's value (the
    recipe's FBA predicts 0 on all of them)."""
    with np.load(DATA / f"{method}_procedure.npz") as data:
        alpha = data["s0_alpha"]
    rule = expected_by_level(method)
    for i, level in enumerate(PROBE_LEVELS):
        assert (probe(inputs["s0_trimap"], i) == level).all()
        square = probe(alpha, i)
        if rule[level] != PREDICTION:
            np.testing.assert_allclose(square, rule[level], atol=1e-7, err_msg=str(level))
            continue
        assert not np.allclose(square, level / 255, atol=1e-4), level
        assert level < FOREGROUND_FROM or not np.all(square == 1), level


def test_gca_classes_its_input_trimap_by_the_official_thresholds() -> None:
    levels = torch.tensor([0, 1, 84, 84.4, 84.6, 85, 128, 169, 169.6, 170, 254, 255.0])
    one_hot = trimap_one_hot(levels.view(1, 1, 1, -1))[0, :, 0]
    assert one_hot.sum(dim=0).eq(1).all()
    assert one_hot.argmax(dim=0).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]


def test_gca_network_imposes_its_classes() -> None:
    torch.manual_seed(0)
    net = GCANet(encoder_layers=(1, 1, 1, 1), decoder_layers=(1, 1, 1, 1)).eval()
    trimap = torch.full((1, 1, 32, 32), 128.0)
    trimap[..., :8, :] = 84.0
    trimap[..., 24:, :] = 170.0
    with torch.inference_mode():
        out = net(torch.randn(1, 3, 32, 32), trimap)
    assert out["alpha"][..., :8, :].eq(0).all() and out["alpha"][..., 24:, :].eq(1).all()
    assert torch.equal(out["alpha"][..., 8:24, :], out["alpha_raw"][..., 8:24, :])


def test_nearest_indices_pick_opencvs_pixels() -> None:
    for src in range(100, 400):
        dst = -(-src // 32) * 32
        row = np.arange(src, dtype=np.float32)[None]
        ref = cv2.resize(row, (dst, 1), interpolation=cv2.INTER_NEAREST)[0]
        assert nearest_indices(src, dst).tolist() == ref.astype(np.int64).tolist(), src
    # torch's own nearest picks another column here (its scale is float32).
    row = torch.arange(200.0).view(1, 1, 1, -1)
    torch_nearest = torch.nn.functional.interpolate(row, size=(1, 224), mode="nearest")
    assert nearest_indices(200, 224)[140] == 124 and torch_nearest[0, 0, 0, 140] == 125


def test_uint8_cast_wraps_as_on_x86_everywhere() -> None:
    x = np.array([-256.0, -5.1, -1.5, -0.9, 0.0, 0.7, 254.9, 255.0, 255.99, 256.3, 300.0, 511.5])
    assert wrap_to_uint8(x).tolist() == [0, 251, 255, 0, 0, 0, 254, 255, 255, 0, 44, 255]
