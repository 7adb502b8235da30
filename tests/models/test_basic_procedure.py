"""BASIC's official test procedure (``methods/basic/inference.py``) against the authors' script.

``tests/data/basic_procedure.npz`` holds what ``test_background-matting_image.py`` (Background
Matting at 9076585, OpenCV 3.4.5) wrote for two synthetic scenes, with golden weights (see
tests/data/README.md): its crops, its cleaned segmentation and its 8-bit alpha.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from p3m_lightning.methods.basic.inference import (
    BASICOfficial,
    clean_segmentation,
    crop_box,
    crop_to_network,
    largest_component,
    official_alpha,
    plate_mask,
    uncrop,
)
from p3m_lightning.methods.basic.network import BASICNet
from p3m_lightning.normalization import normalize
from p3m_lightning.strategies import build_strategy
from tests.conftest import DATA, golden_tensor

TAGS = ("251x333", "400x300")
# The official alpha is 8-bit: ours may differ by one level where float noise in the network
# moves a value across an integer (measured: 6 to 24 pixels of 83,583 / 120,000, 99.98 % to
# 99.99 % equal, at 1 and 2 threads).
MIN_EQUAL = 0.999


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    with np.load(DATA / "basic_procedure.npz") as f:
        return dict(f)


def scene(vectors: dict[str, np.ndarray], tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Photo, plate and person mask (the photo is the plate with the subject pasted in)."""
    bg, mask = vectors[f"{tag}/bg"], vectors[f"{tag}/person_mask"]
    return np.where(mask[..., None] > 0, vectors[f"{tag}/subject"], bg), bg, mask


def tensor(rgb: np.ndarray) -> torch.Tensor:
    return normalize(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)


@pytest.fixture(scope="module")
def golden_net(vectors) -> BASICNet:
    """Golden weights with the last alpha convolution rescaled as in the official run (they
    otherwise saturate the tanh and the alpha is 1 everywhere)."""
    manifest = json.loads((DATA / "basic_manifest.json").read_text())
    net = BASICNet().eval()
    dtypes = {k: str(v.dtype).split(".")[1] for k, v in net.state_dict().items()}
    state = {name: golden_tensor(name, shape, dtypes[name]) for name, shape in manifest["keys"]}
    scale, offset = float(vectors["al_scale"]), float(vectors["al_offset"])
    state["model_al_out.9.weight"] = state["model_al_out.9.weight"] * scale
    state["model_al_out.9.bias"] = state["model_al_out.9.bias"] * scale + offset
    net.load_state_dict(state)
    return net


def assert_reproduces(ours: np.ndarray, official: np.ndarray) -> None:
    diff = np.abs(ours.astype(int) - official.astype(int))
    assert diff.max() <= 1
    assert (diff == 0).mean() >= MIN_EQUAL


def test_crop_box_is_the_official_one_clipped_and_rounded_half_to_even(vectors) -> None:
    # 251x333: mask rows 41..250, columns 68..265, side 209: rows 20.1..270.9 clipped to 250,
    # columns 47.1..297.9: 230 x 251, not square.
    assert crop_box(vectors["251x333/person_mask"]) == (20, 47, 230, 251)
    # 400x300: rows 64..319, columns 57..243, side 255: top 38.5 -> 38 and left 31.5 -> 32
    # (half to even), height 306, columns to 337.5 clipped to 299: width 267.5 -> 268.
    assert crop_box(vectors["400x300/person_mask"]) == (38, 32, 306, 268)
    # Not clipped: a square of 1.2 x the extent.
    mask = np.zeros((100, 100), dtype=np.uint8)
    mask[40, 40] = mask[50, 45] = 255
    assert crop_box(mask) == (39, 39, 12, 12)


def test_photo_crop_equals_the_official_network_input(vectors) -> None:
    image, _, mask = scene(vectors, "251x333")
    crop = crop_to_network(image, crop_box(mask))
    assert crop.shape == (512, 512, 3)
    np.testing.assert_array_equal(crop[::4, ::4], vectors["251x333/img_512_s4"])


@pytest.mark.parametrize("tag", TAGS)
def test_clean_up_equals_the_official_segmentation(vectors, tag: str) -> None:
    mask = vectors[f"{tag}/person_mask"]
    cropped = crop_to_network(mask, crop_box(mask))
    rows = np.nonzero(cropped.sum(axis=1) == 0)[0]
    # 400x300's subject stops above the box's bottom (the rows-deleted path), 251x333's not.
    assert (rows > 250).any() == (tag == "400x300")
    np.testing.assert_array_equal(clean_segmentation(cropped), vectors[f"{tag}/seg_512"])


def test_a_mask_stopping_above_the_bottom_is_cleaned_as_if_it_reached_it() -> None:
    stops = np.zeros((512, 512), dtype=np.uint8)
    stops[100:401, 200:301] = 255
    reaches = stops.copy()
    reaches[401:] = stops[398]
    # Rows 401..511 and the two above (399, 400) go; row 398 is replicated down to the edge.
    seg = clean_segmentation(stops)
    np.testing.assert_array_equal(seg, clean_segmentation(reaches))
    assert seg[511, 250] == 255 and seg[511, 150] == 0


def test_largest_component_is_8_connected_of_alpha_above_0_05() -> None:
    alpha = np.zeros((4, 6), dtype=np.float32)
    alpha[0, 0], alpha[1, 1], alpha[2, 2] = 0.5, 0.6, 0.7  # diagonal: one component of 3
    alpha[0, 4], alpha[0, 5] = 0.9, 0.9  # a component of 2
    alpha[3, 5] = 0.05  # not above 0.05
    kept = largest_component(alpha)
    expected = np.zeros_like(alpha)
    expected[0, 0], expected[1, 1], expected[2, 2] = 0.5, 0.6, 0.7
    np.testing.assert_array_equal(kept, expected)
    assert largest_component(np.full((4, 6), 0.05, dtype=np.float32)) is None


def test_uncrop_fills_the_box_and_leaves_zeros_outside() -> None:
    alpha = np.full((512, 512), 200, dtype=np.uint8)
    out = uncrop(alpha, (2, 3, 4, 5), (10, 12))
    assert out.dtype == np.uint8
    assert (out[2:6, 3:8] == 200).all()
    assert out.sum() == 200 * 4 * 5


def test_plate_mask_of_the_scene_is_the_one_the_official_script_was_given(vectors) -> None:
    image, bg, _ = scene(vectors, "251x333")
    np.testing.assert_array_equal(plate_mask(image, bg), vectors["251x333/plate_mask"])


def test_strategy_without_a_subject_in_the_plate_difference_gives_zeros() -> None:
    net = BASICNet(ngf=8, n_blocks1=2, n_blocks2=1).eval()
    image = tensor(np.full((60, 70, 3), 120, dtype=np.uint8))
    with torch.inference_mode():
        alpha = build_strategy("basic")(net, {"image": image, "bg": image})
    assert alpha.shape == (60, 70) and alpha.dtype == torch.float32
    assert alpha.abs().sum() == 0


def test_strategy_is_the_official_procedure_on_the_plate_mask(vectors) -> None:
    """A tiny network: the strategy's alpha is ``official_alpha`` on the 8-bit inputs and the
    plate mask, as ``level / 255``, and 0 outside the plate mask's crop box."""
    torch.manual_seed(0)
    net = BASICNet(ngf=8, n_blocks1=2, n_blocks2=1).eval()
    image, bg, _ = scene(vectors, "251x333")
    with torch.inference_mode():
        alpha = BASICOfficial()(net, {"image": tensor(image), "bg": tensor(bg)})
        expected = official_alpha(net, image, bg, vectors["251x333/plate_mask"])
    assert expected is not None and expected.any()
    np.testing.assert_array_equal(alpha.numpy(), expected / np.float32(255))
    top, left, height, width = crop_box(vectors["251x333/plate_mask"])
    inside = np.zeros(image.shape[:2], dtype=bool)
    inside[top : top + height, left : left + width] = True
    assert alpha[torch.from_numpy(~inside)].abs().sum() == 0


@pytest.mark.slow
@pytest.mark.parametrize("tag", TAGS)
def test_procedure_reproduces_the_official_alpha(vectors, golden_net, tag: str) -> None:
    """The official script's output for the scene's person mask (its ``*_masksDL.png``)."""
    image, bg, mask = scene(vectors, tag)
    with torch.inference_mode():
        ours = official_alpha(golden_net, image, bg, mask)
    assert ours is not None
    assert_reproduces(ours, vectors[f"{tag}/alpha_u8"])


@pytest.mark.slow
def test_strategy_reproduces_the_official_alpha_on_the_plate_mask(vectors, golden_net) -> None:
    """The official script given the project's plate mask as its ``*_masksDL.png``."""
    image, bg, _ = scene(vectors, "251x333")
    with torch.inference_mode():
        alpha = build_strategy("basic")(golden_net, {"image": tensor(image), "bg": tensor(bg)})
    levels = torch.round(alpha * 255).to(torch.uint8).numpy()
    assert torch.equal(alpha, torch.from_numpy(levels).float() / 255)
    assert_reproduces(levels, vectors["251x333/plate_alpha_u8"])
