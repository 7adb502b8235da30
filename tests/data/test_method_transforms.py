"""The methods' own training augmentations (``data/transform=<method>``): the batch contract,
determinism, and each official parameter checked with real numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from p3m_lightning.data.transforms import to_tensor_sample
from p3m_lightning.methods.dim.transform import DIMTrainTransform, random_choose_unknown
from p3m_lightning.methods.gca.transform import GCATrainTransform, gca_affine_matrix, gca_trimap
from p3m_lightning.methods.gfm.transform import GFMTrainTransform
from p3m_lightning.methods.indexnet.transform import IndexNetTrainTransform, indexnet_trimap
from p3m_lightning.methods.lf.transform import LFTrainTransform, rotate_maps
from p3m_lightning.methods.p3m_journal.transform import (
    JournalP3MTrainTransform,
    requantise_trimap,
    safe_crop,
)
from tests.data.transform_samples import crafted_sample as _sample

CONF = Path(__file__).resolve().parents[2] / "conf"
METHOD_TRANSFORMS = ("gca", "indexnet", "gfm", "dim", "p3m_journal", "lf")


def _call(transform, maps: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    return transform(
        maps["image"], maps["alpha"], maps["fg"], maps["bg"], np.random.default_rng(seed)
    )


def _edge(height: int, width: int, column: int) -> dict[str, np.ndarray]:
    """A vertical hard edge (alpha 255 left of ``column``) with one column of alpha 128."""
    alpha = np.zeros((height, width), np.uint8)
    alpha[:, :column] = 255
    alpha[:, column] = 128
    image = np.dstack([alpha] * 3)
    return {"image": image, "alpha": alpha, "fg": image.copy(), "bg": image.copy()}


@pytest.mark.parametrize("name", METHOD_TRANSFORMS)
def test_config_gives_the_batch_contract_deterministically(name: str) -> None:
    """Each ``data/transform=<method>`` config instantiates, keeps P3MTrainTransform's keys,
    shapes and dtypes, and is a function of the sample's seed."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"data/transform={name}", "data.train_size=96"])
    transform = instantiate(cfg.data.transform)
    maps = _sample(170, 230)
    out = _call(transform, maps, 3)
    assert set(out) == {"image", "alpha", "trimap", "fg", "bg"}
    for key, shape in (("image", (96, 96, 3)), ("fg", (96, 96, 3)), ("bg", (96, 96, 3))):
        assert out[key].shape == shape and out[key].dtype == np.uint8, key
    for key in ("alpha", "trimap"):
        assert out[key].shape == (96, 96) and out[key].dtype == np.uint8, key
    again = _call(transform, maps, 3)
    assert all(np.array_equal(out[k], again[k]) for k in out)
    others = [_call(transform, maps, seed) for seed in range(4, 8)]
    assert any(not np.array_equal(out["alpha"], o["alpha"]) for o in others)
    sample = to_tensor_sample(out)
    assert sample["alpha"].shape == (1, 96, 96) and 0 <= sample["alpha"].min() <= 1
    assert sample["trimap"].max() <= 255


@pytest.mark.parametrize(
    "transform",
    [
        IndexNetTrainTransform(size=96),
        DIMTrainTransform(size=96),
        GCATrainTransform(size=96),
        JournalP3MTrainTransform(size=96),
    ],
    ids=["indexnet", "dim", "gca", "p3m_journal"],
)
def test_trimap_is_exactly_three_levels(transform) -> None:
    # Unlike P3M-Net's resized trimap: these are made at, or cut 1:1 to, the training size.
    for seed in range(6):
        out = _call(transform, _sample(170, 230, seed), seed)
        assert set(np.unique(out["trimap"])) <= {0, 128, 255}


# GFM -------------------------------------------------------------------------------------


def test_gfm_trimap_kernel_is_fixed_at_25() -> None:
    # Crop = output (no resize): the unknown band of a hard edge is erosion + dilation by the
    # 25-pixel ellipse's reach, 12 + 12 = 24 columns (plus the 128 column itself: 25).
    # 1000 does not fit: the crop is the output side, 200, its corner x < 50, so every crop
    # holds the whole band around column 125.
    transform = GFMTrainTransform(size=200, crop_sizes=(1000,), flip_prob=0.0)
    widths = set()
    for seed in range(5):
        out = _call(transform, _edge(300, 250, 125), seed)
        widths |= {int((row == 128).sum()) for row in out["trimap"]}
    assert widths == {25}


def test_gfm_crop_side_falls_back_to_the_output_side() -> None:
    transform = GFMTrainTransform()
    assert transform.crop_side(640, 700, 800) == 640
    assert transform.crop_side(960, 700, 800) == 320  # P3M-Net's rule would give 640
    assert transform.crop_side(1280, 200, 900) == 200  # not even 320 fits


def test_gfm_transition_corner_is_a_pixel_of_alpha_128() -> None:
    maps = _edge(300, 400, 250)
    maps["alpha"][:, 250] = 200  # the band is no longer 128 ...
    maps["alpha"][37, 61] = 128  # ... except one pixel: the corner must be it
    transform = GFMTrainTransform(size=100, crop_sizes=(100,), flip_prob=0.0, transition_prob=1)
    out = _call(transform, maps, 0)
    assert np.array_equal(out["alpha"], maps["alpha"][37:137, 61:161])


# IndexNet --------------------------------------------------------------------------------


@pytest.mark.parametrize("radius", [1, 5, 19])
def test_indexnet_trimap_dilates_the_unknown_band_by_the_radius(radius: int) -> None:
    trimap = indexnet_trimap(_edge(40, 100, 50)["alpha"], radius)
    row = trimap[20]
    assert (row == 128).sum() == 2 * radius + 1
    assert (row[: 50 - radius] == 255).all() and (row[51 + radius :] == 0).all()


def test_indexnet_radius_and_crop_sides_follow_the_official_parameters() -> None:
    transform = IndexNetTrainTransform(size=100, scales=(1.0,), flip_prob=0.0)
    widths = set()
    for seed in range(40):
        out = _call(transform, _edge(300, 400, 200), seed)
        widths.add(int((out["trimap"][50] == 128).sum()))
    # Radii drawn from 1..19: bands of 3..39 columns, many of them.
    assert widths <= set(range(3, 40, 2)) and len(widths) >= 10
    official = IndexNetTrainTransform()
    assert official.crop_sides(700, 800) == [320, 480, 640]
    assert official.crop_sides(500, 700) == [320, 480]


# DIM -------------------------------------------------------------------------------------


def test_dim_trimap_uses_independent_kernels_after_the_resize() -> None:
    # A 320 image, crop 320, resize 320: the trimap is made on the unscaled alpha.
    transform = DIMTrainTransform(size=320, crop_sizes=(320,), flip_prob=0.0)
    left, right = [], []
    for seed in range(30):
        row = _call(transform, _edge(320, 320, 160), seed)["trimap"][100]
        band = np.flatnonzero(row == 128)
        left.append(160 - int(band[0]))
        right.append(int(band[-1]) - 160)
    # Erosion reaches k_e // 2 <= 14 pixels, dilation k_d // 2 <= 14, drawn independently.
    assert max(left) <= 14 and max(right) <= 14 and min(left) >= 0 and min(right) >= 0
    assert left != right
    assert np.array_equal(
        DIMTrainTransform.trimap(_edge(8, 9, 4)["alpha"], 1, 1)[0], [255] * 4 + [128] + [0] * 4
    )


def test_dim_crop_is_centred_on_an_unknown_pixel() -> None:
    unknown = np.zeros((700, 800), bool)
    unknown[350, 420] = True
    assert random_choose_unknown(unknown, 320, np.random.default_rng(0)) == (190, 260)
    unknown = np.zeros((700, 800), bool)
    unknown[5, 790] = True  # no centre fits: that pixel anyway, the corner clipped inside
    assert random_choose_unknown(unknown, 320, np.random.default_rng(0)) == (0, 480)


def test_dim_enlarges_an_image_smaller_than_the_crop() -> None:
    transform = DIMTrainTransform(size=320, crop_sizes=(640,), flip_prob=0.0)
    out = _call(transform, _sample(400, 500), 0)
    # 400 x 500 enlarged by 1.6 to 640 x 800, cropped to 640, resized to 320.
    assert out["alpha"].shape == (320, 320) and set(np.unique(out["trimap"])) <= {0, 128, 255}


# GCA -------------------------------------------------------------------------------------


def test_gca_trimap_erodes_each_side_by_its_kernel() -> None:
    alpha = _edge(40, 100, 50)["alpha"]
    row = gca_trimap(alpha, 11, 21)[20]
    # Foreground eroded by 5, background (alpha == 0) by 10; the 128 column stays unknown.
    assert np.array_equal(np.flatnonzero(row == 128), np.arange(45, 61))


def test_gca_affine_is_the_identity_without_scale_shear_or_flip() -> None:
    identity = gca_affine_matrix((50.5, 40.5), 0.0, (1.0, 1.0), 0.0, (1, 1))
    assert np.allclose(identity, [[1, 0, 0], [0, 1, 0]])
    mirrored = gca_affine_matrix((50.5, 40.5), 0.0, (1.0, 1.0), 0.0, (-1, 1))
    assert np.allclose(mirrored, [[-1, 0, 101], [0, 1, 0]])


def test_gca_crop_is_512_at_scale_one_and_composites_f_over_b() -> None:
    # No affine change, no 640 resize: the output alpha is a 1:1 window of the input at a
    # corner that is a multiple of 4, and the image is alpha F + (1 - alpha) B.
    transform = GCATrainTransform(scale_range=(1.0, 1.0), shear=0.0, flip_prob=0.0, resize_prob=0)
    maps = _sample(600, 700)
    out = _call(transform, maps, 1)
    assert out["alpha"].shape == (512, 512)
    windows = [
        (top, left)
        for top in range(0, 600 - 512 + 1, 4)
        for left in range(0, 700 - 512 + 1, 4)
        if np.array_equal(maps["alpha"][top : top + 512, left : left + 512], out["alpha"])
    ]
    assert len(windows) == 1
    top, left = windows[0]
    assert np.array_equal(out["bg"], maps["bg"][top : top + 512, left : left + 512])
    a = out["alpha"][..., None] / 255
    composite = out["fg"] * a + out["bg"] * (1 - a)
    assert np.abs(out["image"] - composite).max() <= 0.5 + 1e-6
    # The hue jitter changed F (its alpha > 0 pixels) by whole steps of hue.
    assert not np.array_equal(out["fg"], maps["fg"][top : top + 512, left : left + 512])


def test_gca_rotates_only_images_with_a_side_of_1024() -> None:
    transform = GCATrainTransform(size=96, scale_range=(1.0, 1.0), shear=0.0, flip_prob=0.0)
    rng = np.random.default_rng(0)
    for shape in ((300, 1023), (300, 1024)):
        maps = _sample(*shape)
        _, alpha = transform.affine(maps["fg"], maps["alpha"], rng)
        rotated = not np.array_equal(alpha, maps["alpha"])
        assert rotated == (shape[1] >= 1024), shape


# Journal P3M-Net -------------------------------------------------------------------------


def test_journal_safe_crop_and_requantisation_numbers() -> None:
    assert safe_crop((10, 500), 512, (700, 800)) == (0, 244, 512)
    assert safe_crop((690, 790), 512, (700, 800)) == (188, 288, 512)
    assert safe_crop((100, 100), 1024, (700, 800)) == (0, 0, 700)
    levels = np.array([0, 1, 49, 50, 128, 180, 181, 254, 255], np.uint8)
    assert requantise_trimap(levels).tolist() == [0, 0, 0, 128, 128, 128, 255, 255, 255]


def test_journal_crop_is_centred_on_the_drawn_pixel() -> None:
    maps = _edge(300, 400, 250)
    # The image holds half its column index (no 8-bit wrap-around).
    maps["image"] = np.dstack([(np.arange(400) // 2).astype(np.uint8)[None].repeat(300, 0)] * 3)
    transform = JournalP3MTrainTransform(
        size=100, crop_sizes=(100,), flip_prob=0.0, transition_prob=1.0
    )
    for seed in range(5):
        out = _call(transform, maps, seed)
        # Centred on an unknown pixel of the band around column 250: the crop's middle column
        # (index 50) lies in that band (kernels 15..30 reach at most 15 pixels).
        assert 235 // 2 <= int(out["image"][0, 50, 0]) <= 265 // 2


# LF --------------------------------------------------------------------------------------


def test_lf_rotation_turns_every_map_alike_about_the_centre() -> None:
    maps = _sample(101, 101)
    maps["mask"] = (maps["alpha"] > 128).astype(np.uint8)
    turned = rotate_maps(maps, 90.0)
    # A quarter turn counter-clockwise of a square about its centre moves no pixel off grid.
    for key, value in maps.items():
        assert np.array_equal(turned[key], np.rot90(value)), key
    assert turned["mask"].dtype == np.uint8 and set(np.unique(turned["mask"])) <= {0, 1}
    # A small angle keeps the composition: every map is resampled alike, borders mirrored.
    small = rotate_maps(_sample(120, 90), 11.0)
    a = small["alpha"][..., None] / 255.0
    composed = a * small["fg"] + (1 - a) * small["bg"]
    fresh = _sample(120, 90)
    a0 = fresh["alpha"][..., None] / 255.0
    reference = a0 * fresh["fg"] + (1 - a0) * fresh["bg"]
    # The sample's image is its own composition only up to 8-bit rounding; turning adds none.
    assert np.abs(composed - small["image"]).max() <= np.abs(reference - fresh["image"]).max() + 2


def test_lf_draws_angles_within_15_degrees_then_crops_as_p3m_net() -> None:
    transform = LFTrainTransform(size=64, crop_sizes=(64, 100))
    maps = _sample(150, 130)
    angles = [float(np.random.default_rng(seed).uniform(-15, 15)) for seed in range(200)]
    assert -15 <= min(angles) < -13 and 13 < max(angles) <= 15
    for seed in (0, 1, 2):
        # The first draw is the angle; the crop's draws follow from the same generator.
        rng = np.random.default_rng(seed)
        degrees = float(rng.uniform(-15, 15))
        turned = rotate_maps(maps, degrees)
        crop = LFTrainTransform(size=64, crop_sizes=(64, 100), max_degrees=0.0)
        expected = super(LFTrainTransform, crop).__call__(
            turned["image"], turned["alpha"], turned["fg"], turned["bg"], rng
        )
        out = _call(transform, maps, seed)
        for key in expected:
            assert np.array_equal(out[key], expected[key]), (seed, key)
    assert not np.array_equal(
        _call(transform, maps, 0)["alpha"], _call(transform, maps, 1)["alpha"]
    )
    with pytest.raises(ValueError, match="max_degrees"):
        LFTrainTransform(max_degrees=-1)
