"""The training transform: alignment of every map, the recipe's rules, shapes, determinism."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from p3m_lightning.data import transforms
from p3m_lightning.data.transforms import (
    Augmentation,
    P3MTrainTransform,
    normalise_image,
    to_tensor_sample,
)
from p3m_lightning.data.trimap import generate_trimap, trimap_window
from p3m_lightning.normalization import IMAGENET_MEAN, IMAGENET_STD
from tests.data.transform_samples import crafted_sample as _pattern


def _call(transform: P3MTrainTransform, maps: dict[str, np.ndarray], seed: int) -> dict:
    return transform(
        maps["image"], maps["alpha"], maps["fg"], maps["bg"], np.random.default_rng(seed)
    )


def _reference(
    transform: P3MTrainTransform, maps: dict[str, np.ndarray], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """The recipe written the plain way (whole-image trimap, then crop), same random draws."""
    image, alpha = maps["image"], maps["alpha"]
    h, w = alpha.shape
    k = int(rng.integers(transform.kernel_range[0], transform.kernel_range[1] + 1))
    trimap = generate_trimap(alpha, k)
    drawn = transform.crop_sizes[int(rng.integers(len(transform.crop_sizes)))]
    c = drawn if drawn < min(h, w) else min(min(transform.crop_sizes), h, w)
    region = trimap[: max(h - c, 1), : max(w - c, 1)]
    ys, xs = np.nonzero(region == 128) if rng.random() < transform.transition_prob else ((), ())
    if len(ys):
        i = int(rng.integers(len(ys)))
        y, x = ys[i], xs[i]
    else:
        y, x = int(rng.integers(region.shape[0])), int(rng.integers(region.shape[1]))
    flip = rng.random() < transform.flip_prob
    out = {}
    for key, full in (("image", image), ("alpha", alpha), ("trimap", trimap)):
        crop = full[y : y + c, x : x + c]
        crop = crop[:, ::-1] if flip else crop
        out[key] = cv2.resize(np.ascontiguousarray(crop), (transform.size,) * 2)
    return out


SHAPES = [(180, 140), (300, 420), (600, 560), (1100, 800)]


@pytest.mark.parametrize(("height", "width"), SHAPES)
def test_maps_stay_aligned_through_every_random_op(height: int, width: int) -> None:
    maps = _pattern(height, width)
    transform = P3MTrainTransform(size=96)
    flips = set()
    for seed in range(25):
        out = _call(transform, maps, seed)
        image, alpha, fg, bg, trimap = (out[k] for k in ("image", "alpha", "fg", "bg", "trimap"))
        for channel in (image[..., 0], fg[..., 1], bg[..., 2]):
            np.testing.assert_array_equal(channel, alpha)
        np.testing.assert_array_equal(image[..., 1], fg[..., 0])
        np.testing.assert_array_equal(image[..., 1], bg[..., 1])
        np.testing.assert_array_equal(image[..., 2], fg[..., 2])
        np.testing.assert_array_equal(image[..., 2], bg[..., 0])
        # The trimap agrees with the matte despite the resize blur: 255 only where every source
        # pixel is eroded foreground (so alpha is 255), 0 only where alpha is 0, and every soft
        # alpha pixel sees only unknown source pixels (k >= 15 covers a pixel's neighbours).
        assert np.all(alpha[trimap == 255] == 255)
        assert np.all(alpha[trimap == 0] == 0)
        assert np.all(trimap[(alpha > 0) & (alpha < 255)] == 128)
        ramp_x = image[..., 1].astype(int)
        flips.add(bool(ramp_x[:, 0].mean() > ramp_x[:, -1].mean()))
    assert flips == {False, True}


@pytest.mark.parametrize(("height", "width"), SHAPES)
def test_matches_the_plain_whole_image_recipe(height: int, width: int) -> None:
    maps = _pattern(height, width, seed=1)
    transform = P3MTrainTransform(size=64)
    for seed in range(20):
        out = _call(transform, maps, seed)
        expected = _reference(transform, maps, np.random.default_rng(seed))
        for key, value in expected.items():
            np.testing.assert_array_equal(out[key], value, err_msg=f"{key}, seed {seed}")


@pytest.mark.parametrize("kernel_size", [15, 16, 23, 30])
def test_trimap_window_equals_the_whole_image_trimap_cropped(kernel_size: int) -> None:
    alpha = _pattern(300, 260, seed=2)["alpha"]
    full = generate_trimap(alpha, kernel_size)
    rng = np.random.default_rng(kernel_size)
    for _ in range(30):
        r0, c0 = int(rng.integers(0, 299)), int(rng.integers(0, 259))
        r1, c1 = int(rng.integers(r0 + 1, 301)), int(rng.integers(c0 + 1, 261))
        window = trimap_window(alpha, kernel_size, (r0, r1), (c0, c1))
        np.testing.assert_array_equal(window, full[r0:r1, c0:c1])


@pytest.mark.parametrize("kernel_size", [15, 21, 29])
def test_trimap_band_has_the_kernel_width(kernel_size: int) -> None:
    # An odd elliptical kernel reaches r = k // 2 pixels along the axes: a straight hard edge gets
    # an unknown band from edge - r to edge + r - 1, k - 1 pixels wide.
    reach = kernel_size // 2
    edge = np.zeros((80, 120), np.uint8)
    edge[:, 60:] = 255
    trimap = generate_trimap(edge, kernel_size)
    for row in trimap:
        np.testing.assert_array_equal(np.flatnonzero(row == 128), np.arange(60 - reach, 60 + reach))
    # A hard-edged disk: the same band across its boundary, plus at most one pixel on the
    # eroded side where the boundary curves away from the kernel's rows.
    size, radius, centre = 201, 60, 100
    y, x = np.mgrid[0:size, 0:size]
    disk = np.where(np.hypot(y - centre, x - centre) <= radius, 255, 0).astype(np.uint8)
    trimap = generate_trimap(disk, kernel_size)
    assert set(np.unique(trimap)) == {0, 128, 255}
    for profile in (trimap[centre], trimap[:, centre], trimap[centre, ::-1], trimap[::-1, centre]):
        band = np.flatnonzero(profile[:centre] == 128)
        assert band.min() == centre - radius - reach
        assert len(band) in (kernel_size - 1, kernel_size)
        np.testing.assert_array_equal(band, np.arange(band.min(), band.max() + 1))
        assert np.all(profile[band.max() + 1 : centre + 1] == 255)
        assert np.all(profile[: band.min()] == 0)


def test_trimap_values_match_the_reference_formula() -> None:
    alpha = _pattern(120, 90, seed=3)["alpha"]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (17, 17))
    dilate = cv2.dilate((alpha != 0).astype(np.float32), kernel)
    erode = cv2.erode((alpha == 255).astype(np.float32), kernel)
    expected = (erode * 255 + (dilate - erode) * 128).astype(np.uint8)
    np.testing.assert_array_equal(generate_trimap(alpha, 17), expected)


def test_kernel_sizes_cover_the_inclusive_range(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = set()

    def spy(alpha, kernel_size, rows, cols):
        seen.add(kernel_size)
        return generate_trimap(alpha, kernel_size)[rows[0] : rows[1], cols[0] : cols[1]]

    monkeypatch.setattr(transforms, "trimap_window", spy)
    maps = _pattern(64, 64)
    transform = P3MTrainTransform(size=16, crop_sizes=(32,))
    for seed in range(400):
        _call(transform, maps, seed)
    assert seen == set(range(15, 31))


def test_transition_corner_is_an_unknown_pixel() -> None:
    maps = _pattern(240, 200, seed=4)
    # Crop side = output side and no flip: the output's first pixel shows the crop corner.
    transform = P3MTrainTransform(
        size=64, crop_sizes=(64,), kernel_range=(15, 15), flip_prob=0.0, transition_prob=1.0
    )
    y, x = np.mgrid[0:240, 0:200]
    maps["image"] = np.dstack([y, x, np.zeros_like(x)]).astype(np.uint8)
    trimap = generate_trimap(maps["alpha"], 15)
    corners = set()
    for seed in range(40):
        out = _call(transform, maps, seed)
        cy, cx = int(out["image"][0, 0, 0]), int(out["image"][0, 0, 1])
        assert trimap[cy, cx] == 128
        assert cy < 240 - 64 and cx < 200 - 64
        np.testing.assert_array_equal(out["trimap"], trimap[cy : cy + 64, cx : cx + 64])
        corners.add((cy, cx))
    assert len(corners) > 20


def test_crop_side_rule_and_fallbacks() -> None:
    transform = P3MTrainTransform()
    assert transform.crop_side(1024, 1080, 1620) == 1024
    assert transform.crop_side(768, 1620, 1080) == 768
    assert transform.crop_side(1024, 1000, 1500) == 512
    assert transform.crop_side(1024, 1024, 1500) == 512
    assert transform.crop_side(768, 700, 900) == 512
    # Smaller than every crop size: the largest square that fits.
    assert transform.crop_side(512, 400, 600) == 400
    assert transform.crop_side(1024, 512, 900) == 512
    assert P3MTrainTransform(crop_sizes=(300, 200)).crop_side(300, 250, 400) == 200


@pytest.mark.parametrize(("height", "width"), [(256, 384), (400, 300), (128, 128)])
def test_small_images_give_full_size_outputs(height: int, width: int) -> None:
    maps = _pattern(height, width)
    out = _call(P3MTrainTransform(size=128), maps, seed=0)
    assert set(out) == {"image", "alpha", "trimap", "fg", "bg"}
    for key in ("image", "fg", "bg"):
        assert out[key].shape == (128, 128, 3) and out[key].dtype == np.uint8
    for key in ("alpha", "trimap"):
        assert out[key].shape == (128, 128) and out[key].dtype == np.uint8


def test_tensor_sample_shapes_dtypes_and_ranges() -> None:
    maps = _pattern(300, 260)
    sample = to_tensor_sample(_call(P3MTrainTransform(size=128), maps, seed=5))
    assert list(sample) == ["image", "alpha", "trimap", "fg", "bg"]
    for key in ("image", "fg", "bg"):
        assert sample[key].shape == (3, 128, 128) and sample[key].dtype == torch.float32
    for key in ("alpha", "trimap"):
        assert sample[key].shape == (1, 128, 128) and sample[key].dtype == torch.float32
    assert sample["alpha"].min() >= 0 and sample["alpha"].max() <= 1
    assert sample["trimap"].min() >= 0 and sample["trimap"].max() <= 255
    low = (0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    high = (1 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    per_channel = sample["image"].flatten(1)
    assert torch.all(per_channel.min(1).values >= torch.tensor(low, dtype=torch.float32) - 1e-6)
    assert torch.all(per_channel.max(1).values <= torch.tensor(high, dtype=torch.float32) + 1e-6)


def test_resized_trimap_has_in_between_values() -> None:
    maps = _pattern(1100, 800)
    transform = P3MTrainTransform(size=128, crop_sizes=(1024,), transition_prob=1.0)
    values = set()
    for seed in range(5):
        values |= set(np.unique(_call(transform, maps, seed)["trimap"]).tolist())
    assert {0, 128, 255} <= values and values - {0, 128, 255}


def test_normalisation_matches_the_reference_arithmetic() -> None:
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    np.testing.assert_array_equal(normalise_image(image), ((tensor - mean) / std).numpy())


def test_same_seed_same_sample_other_seed_other_sample() -> None:
    maps = _pattern(600, 560)
    transform = P3MTrainTransform(size=64)
    first, again = _call(transform, maps, 7), _call(transform, maps, 7)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    others = [_call(transform, maps, seed)["image"] for seed in range(8, 12)]
    assert any(not np.array_equal(first["image"], other) for other in others)


def test_rejects_mismatched_maps() -> None:
    maps = _pattern(100, 80)
    with pytest.raises(ValueError, match="same size"):
        P3MTrainTransform(size=32)(
            maps["image"], maps["alpha"][:90], maps["fg"], maps["bg"], np.random.default_rng(0)
        )


def _same_maps(size: int = 96) -> dict[str, np.ndarray]:
    """image = F = B (a colour pattern), so a consistent photometric change keeps them equal."""
    maps = _pattern(300, 260, seed=3)
    return {**maps, "fg": maps["image"].copy(), "bg": maps["image"].copy()}


def test_photometric_augmentation_changes_image_f_and_b_alike_and_leaves_alpha() -> None:
    import albumentations

    maps = _same_maps()
    plain = _call(P3MTrainTransform(size=96), maps, seed=11)
    augment = Augmentation([albumentations.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0)])
    out = _call(P3MTrainTransform(size=96, augment=augment), maps, seed=11)
    # The published draws come first, so the crop is the plain one's.
    np.testing.assert_array_equal(out["alpha"], plain["alpha"])
    np.testing.assert_array_equal(out["trimap"], plain["trimap"])
    assert np.abs(out["image"].astype(int) - plain["image"]).mean() > 2
    np.testing.assert_array_equal(out["fg"], out["image"])
    np.testing.assert_array_equal(out["bg"], out["image"])


def test_geometric_augmentation_moves_every_map_together() -> None:
    import albumentations

    maps = _pattern(300, 260, seed=4)
    plain = _call(P3MTrainTransform(size=96), maps, seed=2)
    augment = Augmentation([albumentations.VerticalFlip(p=1.0)])
    out = _call(P3MTrainTransform(size=96, augment=augment), maps, seed=2)
    for key in ("image", "alpha", "trimap", "fg", "bg"):
        np.testing.assert_array_equal(out[key], plain[key][::-1], err_msg=key)


def test_augmentation_is_a_function_of_the_sample_seed() -> None:
    import albumentations

    transform = P3MTrainTransform(
        size=64, augment=Augmentation([albumentations.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0)])
    )
    maps = _same_maps()
    first, again, other = (_call(transform, maps, seed=s)["image"] for s in (5, 5, 6))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_photometric_config_instantiates_into_the_datamodule() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    conf = str(Path(__file__).resolve().parents[2] / "conf")
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        cfg = compose("train", overrides=["data/transform/augment=photometric"])
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule.transform, P3MTrainTransform)
    assert datamodule.transform.size == cfg.data.train_size
    assert isinstance(datamodule.transform.augment, Augmentation)
    out = _call(datamodule.transform, _same_maps(), seed=0)
    assert out["image"].shape == (cfg.data.train_size, cfg.data.train_size, 3)


def test_extra_maps_follow_the_crop_flip_and_resize_and_masks_stay_binary() -> None:
    import albumentations

    maps = _pattern(300, 260, seed=5)
    extra = {"cp_source": maps["image"].copy(), "cp_mask": np.where(maps["alpha"] > 128, 255, 0)}
    extra["cp_mask"] = extra["cp_mask"].astype(np.uint8)
    for augment in (None, Augmentation([albumentations.VerticalFlip(p=1.0)])):
        transform = P3MTrainTransform(size=96, augment=augment)
        rng = np.random.default_rng(8)
        out = transform(maps["image"], maps["alpha"], maps["fg"], maps["bg"], rng, extra=extra)
        plain = _call(P3MTrainTransform(size=96, augment=augment), maps, seed=8)
        # Extras draw nothing: the published maps are the same with or without them.
        for key in ("image", "alpha", "trimap"):
            np.testing.assert_array_equal(out[key], plain[key])
        np.testing.assert_array_equal(out["cp_source"], out["image"])
        assert set(np.unique(out["cp_mask"])) <= {0, 255}
        agree = (out["cp_mask"] > 0) == (out["alpha"] > 128)
        assert agree.mean() > 0.97
    with pytest.raises(ValueError, match="extra maps"):
        transform(
            maps["image"],
            maps["alpha"],
            maps["fg"],
            maps["bg"],
            rng,
            extra={"x": maps["alpha"][:5]},
        )
