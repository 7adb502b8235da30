"""The Python API (``Matter``) and photo I/O (``p3m_lightning.imageio``) on real files."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from p3m_lightning.api import Matter, parse_background
from p3m_lightning.imageio import ImageReadError, alpha_to_uint8, read_image, write_png_atomic
from p3m_lightning.models.checkpoint import load_model


@pytest.fixture(scope="module")
def matter(ckpt: Path) -> Matter:
    return Matter(ckpt)


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colour image (compresses like a photo, unlike noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _network_inputs(matter: Matter) -> tuple[list[tuple[int, int]], object]:
    """Record the (H, W) of every network input; returns the list and the hook handle."""
    sizes: list[tuple[int, int]] = []
    handle = matter.model.register_forward_pre_hook(
        lambda _module, args: sizes.append(tuple(args[0].shape[-2:]))
    )
    return sizes, handle


def test_predict_accepts_array_pil_and_path(matter: Matter, tmp_path: Path) -> None:
    rgb = _photo(72, 100)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    from_array = matter.predict(rgb)
    assert from_array.dtype == np.float32 and from_array.shape == (72, 100)
    assert from_array.min() >= 0.0 and from_array.max() <= 1.0
    np.testing.assert_array_equal(matter.predict(Image.fromarray(rgb)), from_array)
    np.testing.assert_array_equal(matter.predict(path), from_array)
    np.testing.assert_array_equal(matter.predict(str(path)), from_array)
    # Grayscale and RGBA arrays are accepted too (alpha channel dropped).
    assert matter.predict(rgb[..., 0]).shape == (72, 100)
    rgba = np.dstack((rgb, np.full((72, 100), 7, np.uint8)))
    np.testing.assert_array_equal(matter.predict(rgba), from_array)


def test_lightning_checkpoint_gives_the_same_alpha(
    ckpt: Path, matter: Matter, tmp_path: Path
) -> None:
    net = load_model(ckpt)  # unfused: Matter's own model has BatchNorm folded in
    lightning = tmp_path / "last.ckpt"
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
            "p3m_net": net.arch_config(),
            "epoch": 3,
        },
        lightning,
    )
    rgb = _photo(64, 64, seed=5)
    np.testing.assert_array_equal(Matter(lightning).predict(rgb), matter.predict(rgb))


@pytest.mark.parametrize("strategy", ["resize", "hybrid"])
def test_strategies_and_bf16(ckpt: Path, strategy: str) -> None:
    rgb = _photo(80, 64, seed=1)
    fp32 = Matter(ckpt, strategy=strategy).predict(rgb)
    bf16 = Matter(ckpt, strategy=strategy, precision="bf16").predict(rgb)
    for alpha in (fp32, bf16):
        assert alpha.dtype == np.float32 and alpha.shape == (80, 64)
        assert alpha.min() >= 0.0 and alpha.max() <= 1.0


def test_hybrid_uses_a_full_size_pass(ckpt: Path) -> None:
    matter = Matter(ckpt, strategy="hybrid")
    sizes, handle = _network_inputs(matter)
    matter.predict(_photo(128, 96))
    handle.remove()
    assert sizes == [(64, 32), (128, 96)]  # half-size trimap pass, full-size local pass


def test_shorter_side_limit_bounds_the_network_input(ckpt: Path) -> None:
    matter = Matter(ckpt, strategy="hybrid", shorter_side_limit=64)
    sizes, handle = _network_inputs(matter)
    alpha = matter.predict(_photo(96, 160))
    handle.remove()
    assert alpha.shape == (96, 160)  # resized back to the photo's size
    assert sizes == [(32, 32), (64, 96)]  # matted at 64 x 107


def test_tiny_image_is_padded_not_refused(matter: Matter) -> None:
    sizes, handle = _network_inputs(matter)
    alpha = matter.predict(_photo(16, 20))
    handle.remove()
    assert alpha.shape == (16, 20)
    assert set(sizes) == {(32, 32)}
    assert matter.predict(_photo(1, 1)).shape == (1, 1)


def test_cutout_is_premultiplied(matter: Matter) -> None:
    rgb = _photo(40, 50, seed=2)
    alpha = np.linspace(0, 1, 40 * 50, dtype=np.float32).reshape(40, 50)
    rgba = matter.cutout(rgb, alpha)
    assert rgba.dtype == np.uint8 and rgba.shape == (40, 50, 4)
    a8 = alpha_to_uint8(alpha)
    np.testing.assert_array_equal(rgba[..., 3], a8)
    expected = np.round(rgb.astype(np.float64) * a8[..., None] / 255.0)
    assert np.abs(rgba[..., :3].astype(np.float64) - expected).max() <= 1


def test_composite_colour_and_image(matter: Matter, tmp_path: Path) -> None:
    rgb = _photo(30, 40, seed=3)
    alpha = np.zeros((30, 40), np.float32)
    alpha[:, :20] = 1.0
    green = matter.composite(rgb, alpha, "#00ff00")
    assert green.dtype == np.uint8 and green.shape == (30, 40, 3)
    np.testing.assert_array_equal(green[:, :20], rgb[:, :20])
    assert (green[:, 20:] == (0, 255, 0)).all()
    np.testing.assert_array_equal(matter.composite(rgb, alpha, (0, 255, 0)), green)
    background = tmp_path / "bg.png"
    Image.fromarray(_photo(300, 100, seed=4)).save(background)  # covers after scaling
    over_image = matter.composite(rgb, alpha, background)
    assert over_image.shape == (30, 40, 3)
    np.testing.assert_array_equal(over_image[:, :20], rgb[:, :20])


def test_bad_arguments_are_explained(ckpt: Path, matter: Matter) -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        Matter(ckpt, strategy="tiles")
    with pytest.raises(ValueError, match="unknown precision"):
        Matter(ckpt, precision="16")
    with pytest.raises(FileNotFoundError):
        Matter(ckpt.with_name("missing.pth"))
    with pytest.raises(ValueError, match="neither an existing image file nor a colour"):
        parse_background("#nothex")
    with pytest.raises(ValueError, match="does not match"):
        matter.cutout(_photo(10, 10), np.zeros((10, 11), np.float32))
    with pytest.raises(TypeError):
        matter.predict(3)


def test_read_image_modes_exif_and_16_bit(tmp_path: Path) -> None:
    base = _photo(24, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(base).save(tmp_path / "exif.jpg", exif=exif)
    assert read_image(tmp_path / "exif.jpg").shape == (40, 24, 3)

    Image.fromarray(base[..., 0]).save(tmp_path / "gray.png")
    gray = read_image(tmp_path / "gray.png")
    assert gray.shape == (24, 40, 3) and (gray[..., 0] == base[..., 0]).all()

    Image.fromarray(base).convert("P").save(tmp_path / "palette.png")
    assert read_image(tmp_path / "palette.png").shape == (24, 40, 3)

    rgba = np.dstack((base, np.zeros((24, 40), np.uint8)))
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), base)  # alpha dropped

    values = np.array([[0, 257, 1000, 32768, 65535]], np.uint16)
    expected = np.array([[0, 1, 4, 128, 255]], np.uint8)
    for name in ("gray16.png", "gray16.tif"):
        cv2.imwrite(str(tmp_path / name), values)
        np.testing.assert_array_equal(read_image(tmp_path / name)[..., 1], expected)
    colour16 = np.dstack([values] * 3)
    cv2.imwrite(str(tmp_path / "rgb16.tif"), colour16)
    assert np.abs(read_image(tmp_path / "rgb16.tif")[..., 0].astype(int) - expected).max() <= 1


def test_read_image_errors_name_the_file(tmp_path: Path) -> None:
    Image.fromarray(_photo(64, 64)).save(tmp_path / "ok.jpg", quality=95)
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not a photo\n")
    for name, reason in (
        ("truncated.jpg", "cannot decode"),
        ("text.jpg", "not an image"),
        ("missing.png", "no such file"),
    ):
        with pytest.raises(ImageReadError, match=reason) as info:
            read_image(tmp_path / name)
        assert info.value.path.name == name and name in str(info.value)


def test_write_png_atomic_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "alpha.png"
    image = _photo(20, 30)
    write_png_atomic(target, image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpha.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(target)), image)

    def disk_full(fd: int) -> None:  # the bytes are in the temporary file by now
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="disk full"):
        write_png_atomic(target, np.zeros((5, 5), np.uint8))
    # The old file is intact and no temporary file is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpha.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(target)), image)
