"""The report's comparison gallery: which images it shows, and that it never shows a clear face
where a run's privacy settings say faces must be obfuscated (failing closed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from p3m_lightning.data.privacy import detect_faces
from p3m_lightning.data.synthetic import generate
from p3m_lightning.data.trimap import generate_trimap
from p3m_lightning.imageio import write_png_atomic
from p3m_lightning.panels import DisplayPrivacy
from p3m_lightning.report import COLUMNS, load_runs
from p3m_lightning.report_gallery import (
    TILE,
    Gallery,
    fit_tile,
    hardest_images,
    strictest_privacy,
    tile_origin,
    write_gallery,
)
from tests.report_sweeps import SYNTHETIC, data_config, tiny_gfm, write_run

NP = "P3M-500-NP"
RGB = cv2.COLOR_BGR2RGB
DEFAULTS = {"allow_unobfuscated": False, "method": "blur", "on_no_face": "person"}


def test_hardest_images_are_those_of_highest_mean_sad_over_the_runs() -> None:
    runs = [
        {("A", "x"): 9.0, ("A", "y"): 1.0, ("A", "z"): 4.0, ("B", "u"): 2.0},
        {("A", "x"): 1.0, ("A", "y"): 8.0, ("A", "z"): 4.0},
    ]
    # Means: x 5.0, y 4.5, z 4.0; each run alone would rank x or y first.
    assert hardest_images(runs, 2) == {"A": ["x", "y"], "B": ["u"]}
    assert hardest_images(runs, 5) == {"A": ["x", "y", "z"], "B": ["u"]}
    # Ties go by name.
    assert hardest_images([{("A", "b"): 3.0, ("A", "a"): 3.0}], 1) == {"A": ["a"]}


def test_photos_of_several_runs_get_the_most_cautious_privacy() -> None:
    def strictest(*privacy: dict) -> DisplayPrivacy:
        return strictest_privacy([{"privacy": p} for p in privacy])

    waived = {**DEFAULTS, "allow_unobfuscated": True}
    assert strictest(waived, waived).allow_unobfuscated
    assert not strictest(waived, DEFAULTS).allow_unobfuscated
    # A run without a privacy section has the defaults.
    assert not strictest_privacy([{"privacy": waived}, {}]).allow_unobfuscated
    mixed = strictest({**DEFAULTS, "on_no_face": "head"}, {**DEFAULTS, "method": "mosaic"})
    assert mixed == DisplayPrivacy(False, "fill", "person", True)
    assert strictest(DEFAULTS, {**DEFAULTS, "on_no_face": "skip"}).on_no_face == "skip"
    assert not strictest(DEFAULTS, {**DEFAULTS, "use_detector": False}).use_detector
    assert strictest({**DEFAULTS, "on_no_face": "error"}, DEFAULTS).on_no_face == "error"
    # The detector of best recall that any of the runs uses.
    haar = {**DEFAULTS, "detector": "haar"}
    assert strictest(haar, DEFAULTS).detector == "mtcnn"
    assert strictest(haar, haar).detector == "haar"
    with pytest.raises(ValueError, match="detector must be one of"):
        strictest({**DEFAULTS, "detector": "yolo"})


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("gallery") / "synthetic", **SYNTHETIC)


def _clear_faces_root(synthetic: Path, root: Path) -> Path:
    """A P3M-10k-like root whose P3M-500-NP holds the synthetic P3M-500-P portraits with clear
    faces (``original_image``) and their face masks."""
    source, split = synthetic / "validation" / "P3M-500-P", root / "validation" / NP
    for folder in ("original_image", "mask", "trimap", "facemask"):
        shutil.copytree(source / folder, split / folder)
    return root


def _astronaut_root(root: Path) -> Path:
    """A P3M-10k-like root whose P3M-500-NP is one real photo with a clear face, no face mask."""
    image = cv2.resize(skdata.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    alpha = np.zeros(image.shape[:2], np.uint8)
    alpha[20:, 40:220] = 255  # a rough person box: the gallery needs a matte, not a good one
    split = root / "validation" / NP
    for folder, array in (
        ("original_image", image),
        ("mask", alpha),
        ("trimap", generate_trimap(alpha, 15)),
    ):
        (split / folder).mkdir(parents=True)
        write_png_atomic(split / folder / "astronaut.png", array)
    return root


def _gallery(
    tmp: Path, data_root: Path, privacy: dict, synthetic_data: bool = False
) -> tuple[Gallery, np.ndarray | None]:
    """One B-trained GFM run tested on P3M-500-NP; its B:N gallery PNG (None: not written)."""
    names = sorted(p.stem for p in (data_root / "validation" / NP / "mask").iterdir())
    sweep = tmp / "sweep"
    data = data_config(data_root, [NP], synthetic=synthetic_data)
    # The first image is the hardest.
    per_image = {(NP, name): 10.0 - i for i, name in enumerate(names)}
    write_run(sweep / "run", tiny_gfm(), "gfm", "B", data, per_image, privacy=privacy)
    runs, _ = load_runs(sweep)
    gallery = write_gallery(sweep, runs, tmp / "gallery", COLUMNS, hardest=1)
    path = tmp / "gallery" / "B-N_P3M-500-NP.png"
    if not path.is_file():
        return gallery, None
    return gallery, np.asarray(Image.open(path).convert("RGB"))


def _photo_tile(png: np.ndarray) -> np.ndarray:
    x, y = tile_origin(0, 0)
    return png[y : y + TILE, x : x + TILE]


def _sharpness(tile: np.ndarray, region: np.ndarray) -> float:
    """Mean absolute Laplacian (fine detail: eyes, mouth, edges) inside ``region``."""
    gray = cv2.cvtColor(tile, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_32F))[region].mean())


def test_clear_faces_with_face_masks_are_blurred_inside_the_mask(tmp_path, synthetic) -> None:
    data_root = _clear_faces_root(synthetic, tmp_path / "clear")
    gallery, png = _gallery(tmp_path, data_root, DEFAULTS)
    assert png is not None
    (figure,) = gallery.figures
    assert figure.photo_sources == {"mask": 1}
    name = figure.images[0]
    split = data_root / "validation" / NP
    clear = fit_tile(cv2.cvtColor(cv2.imread(str(split / "original_image" / f"{name}.jpg")), RGB))
    face = fit_tile(cv2.imread(str(split / "facemask" / f"{name}.png")))[..., 0] > 0
    shown = _photo_tile(png)
    kernel = np.ones((7, 7), np.uint8)
    inner = cv2.erode(face.astype(np.uint8), kernel) > 0
    outer = cv2.dilate(face.astype(np.uint8), kernel) == 0
    assert inner.sum() > 500 and outer.sum() > 10_000
    # The face has lost its detail; everything away from it is the photo as it is.
    assert _sharpness(shown, inner) < 0.5 * _sharpness(clear, inner)
    assert np.abs(shown.astype(int) - clear)[inner].mean() > 2.0
    np.testing.assert_array_equal(shown[outer], clear[outer])


def test_waived_privacy_shows_the_photo_as_it_is(tmp_path, synthetic) -> None:
    data_root = _clear_faces_root(synthetic, tmp_path / "clear")
    gallery, png = _gallery(tmp_path, data_root, {**DEFAULTS, "allow_unobfuscated": True})
    assert png is not None and gallery.figures[0].photo_sources == {"unobfuscated": 1}
    name = gallery.figures[0].images[0]
    path = data_root / "validation" / NP / "original_image" / f"{name}.jpg"
    clear = fit_tile(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
    np.testing.assert_array_equal(_photo_tile(png), clear)


def test_a_real_face_without_face_mask_is_found_and_blurred(tmp_path) -> None:
    data_root = _astronaut_root(tmp_path / "astronaut")
    # on_partial=faces: the detected face alone (the default also blurs the whole person).
    gallery, png = _gallery(tmp_path, data_root, {**DEFAULTS, "on_partial": "faces"})
    assert png is not None and gallery.figures[0].photo_sources == {"detector": 1}
    image = cv2.resize(skdata.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    clear = fit_tile(image)
    (x, y, w, h) = detect_faces(clear)[0]
    shown = _photo_tile(png)
    assert detect_faces(shown) == []
    change = np.abs(shown[y : y + h, x : x + w].astype(int) - clear[y : y + h, x : x + w])
    assert change.mean() > 5.0
    np.testing.assert_array_equal(shown[-20:], clear[-20:])  # far from the face


def test_without_detector_the_fallback_blurs_the_whole_person(tmp_path, synthetic) -> None:
    privacy = {**DEFAULTS, "use_detector": False}
    gallery, png = _gallery(tmp_path, synthetic, privacy, synthetic_data=True)
    assert png is not None and gallery.figures[0].photo_sources == {"person": 1}
    name = gallery.figures[0].images[0]
    split = synthetic / "validation" / NP
    clear = fit_tile(cv2.cvtColor(cv2.imread(str(split / "original_image" / f"{name}.jpg")), RGB))
    person = fit_tile(cv2.imread(str(split / "mask" / f"{name}.png")))[..., 0] > 0
    kernel = np.ones((9, 9), np.uint8)
    inner = cv2.erode(person.astype(np.uint8), kernel) > 0
    shown = _photo_tile(png)
    assert _sharpness(shown, inner) < 0.5 * _sharpness(clear, inner)


@pytest.mark.parametrize("on_no_face", ["skip", "error"])
def test_an_image_without_face_region_is_left_out(tmp_path, synthetic, on_no_face) -> None:
    privacy = {**DEFAULTS, "use_detector": False, "on_no_face": on_no_face}
    gallery, png = _gallery(tmp_path, synthetic, privacy, synthetic_data=True)
    assert png is None and gallery.figures == []
    assert any("left out, no face region" in note for note in gallery.notes)


def test_a_new_report_deletes_the_gallery_of_an_earlier_one(tmp_path: Path) -> None:
    """An earlier gallery (perhaps written under a waiver since withdrawn) never outlives a
    new report, even one that asks for no gallery."""
    out = tmp_path / "gallery"
    out.mkdir()
    write_png_atomic(out / "B-N_P3M-500-NP.png", np.zeros((4, 4, 3), np.uint8))
    gallery = write_gallery(tmp_path, [], out, COLUMNS, hardest=0)
    assert list(out.iterdir()) == [] and gallery.figures == []
    assert gallery.notes == ["gallery: none asked for (--hardest 0)"]
