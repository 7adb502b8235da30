"""The face detectors on real photographs shipped with scikit-image and matplotlib."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np
import pytest
import skimage.data

from p3m_lightning.data import face_detection
from p3m_lightning.data.face_detection import (
    MTCNN,
    ONet,
    PNet,
    RNet,
    detect_faces,
    load_keras_weights,
    read_keras_weights,
)
from p3m_lightning.data.privacy import face_mask_from_boxes, obfuscate_faces

ASTRONAUT_FACE = (182, 72, 268, 172)
"""The astronaut's face in the 512 px image, x1, y1, x2, y2: cheek to cheek, hairline to chin
(by eye)."""

GRACE_HOPPER_FACE = (181, 120, 354, 340)
"""Grace Hopper's face in matplotlib's 512 x 600 sample photo, x1, y1, x2, y2 (by eye)."""


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _corners(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x, y, w, h = box
    return x, y, x + w, y + h


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    image = skimage.data.astronaut()
    image.flags.writeable = False
    return image


def _paste(
    canvas: np.ndarray,
    photo: np.ndarray,
    face: tuple[int, int, int, int],
    height: int,
    at: tuple[int, int],
    angle: float = 0.0,
) -> tuple[float, float, float, float]:
    """Paste a square crop around ``face`` (x1, y1, x2, y2), scaled to a face ``height`` px
    high and turned by ``angle`` degrees about the face, with its top-left corner at ``at``;
    returns where the face now is."""
    x1, y1, x2, y2 = face
    half = round(1.2 * (y2 - y1))
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    padded = cv2.copyMakeBorder(photo, half, half, half, half, cv2.BORDER_REPLICATE)
    crop = padded[cy : cy + 2 * half, cx : cx + 2 * half]
    scale = height / (y2 - y1)
    side = round(2 * half * scale)
    crop = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    turn = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
    crop = cv2.warpAffine(crop, turn, (side, side), borderMode=cv2.BORDER_REPLICATE)
    left, top = at
    canvas[top : top + side, left : left + side] = crop
    w, h = (x2 - x1) * scale, (y2 - y1) * scale
    mid_x, mid_y = left + side / 2, top + side / 2
    return mid_x - w / 2, mid_y - h / 2, mid_x + w / 2, mid_y + h / 2


@pytest.fixture(scope="module")
def group(astronaut: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """A 640 x 480 composite of four faces: the astronaut at 100 and 28 px, Grace Hopper at
    40 px and at 70 px turned 25 degrees; and where the faces are."""
    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    grace = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    canvas = np.full((480, 640, 3), 120, np.uint8)
    faces = [
        _paste(canvas, astronaut, ASTRONAUT_FACE, 100, (20, 40)),
        _paste(canvas, grace, GRACE_HOPPER_FACE, 40, (320, 60)),
        _paste(canvas, astronaut, ASTRONAUT_FACE, 28, (470, 320)),
        _paste(canvas, grace, GRACE_HOPPER_FACE, 70, (200, 250), angle=25),
    ]
    return canvas, faces


def _found(boxes: list[tuple[int, int, int, int]], faces: list[tuple[float, ...]]) -> int:
    """How many of ``faces`` some box overlaps with an IoU of at least 0.3."""
    return sum(any(_iou(_corners(box), face) >= 0.3 for box in boxes) for face in faces)


@pytest.mark.parametrize(
    ("net", "name", "arrays", "shapes"),
    [
        (PNet, "pnet", 13, {"conv1.weight": (10, 3, 3, 3), "classify.weight": (2, 32, 1, 1)}),
        (RNet, "rnet", 16, {"conv3.weight": (64, 48, 2, 2), "dense4.weight": (128, 576)}),
        (ONet, "onet", 21, {"prelu4.weight": (128,), "dense5.weight": (256, 1152)}),
    ],
)
def test_networks_load_the_packaged_weights(
    net: type, name: str, arrays: int, shapes: dict[str, tuple[int, ...]]
) -> None:
    weights = read_keras_weights(name)
    assert len(weights) == arrays
    model = net()
    load_keras_weights(model, weights)
    state = model.state_dict()
    assert len(state) == arrays  # every array went to one tensor, none was left over
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape
    # Keras conv kernels are (kh, kw, in, out): the first one lands transposed, not reshaped.
    np.testing.assert_array_equal(state["conv1.weight"].numpy(), weights[0].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(state["conv1.bias"].numpy(), weights[1])


def test_a_weight_file_of_another_layout_is_refused() -> None:
    weights = read_keras_weights("rnet")
    with pytest.raises(ValueError, match="RNet takes 16 weight arrays, the file holds 15"):
        load_keras_weights(RNet(), weights[:-1])
    swapped = [*weights[:9], weights[9].T, *weights[10:]]
    with pytest.raises(ValueError, match=r"RNet.dense4.weight: expected \(128, 576\)"):
        load_keras_weights(RNet(), swapped)


@pytest.mark.parametrize("size", [256, 512])
def test_finds_the_astronaut_face(astronaut: np.ndarray, size: int) -> None:
    image = cv2.resize(astronaut, (size, size), interpolation=cv2.INTER_AREA)
    (box,) = detect_faces(image)
    face = tuple(v * size / 512 for v in ASTRONAUT_FACE)
    assert _iou(_corners(box), face) > 0.6


def test_misses_the_astronaut_turned_90_degrees(astronaut: np.ndarray) -> None:
    # MTCNN knows upright faces (about +-45 degrees); tests/test_privacy_panels.py needs a
    # face it misses, and this is the one.
    assert detect_faces(np.ascontiguousarray(np.rot90(astronaut))) == []


@pytest.mark.parametrize("method", ["blur", "mosaic"])
def test_finds_no_face_once_obfuscated(astronaut: np.ndarray, method: str) -> None:
    x1, y1, x2, y2 = ASTRONAUT_FACE
    mask = face_mask_from_boxes(astronaut.shape, [(x1, y1, x2 - x1, y2 - y1)])
    assert detect_faces(obfuscate_faces(astronaut, mask, method=method)) == []


@pytest.mark.parametrize("name", ["coffee", "chelsea", "brick", "rocket"])
def test_finds_no_face_where_there_is_none(name: str) -> None:
    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    assert detect_faces(image) == []


def test_finds_more_faces_than_haar(group: tuple[np.ndarray, list]) -> None:
    image, faces = group
    mtcnn = detect_faces(image)
    haar = detect_faces(image, detector="haar")
    assert _found(mtcnn, faces) == 4 and len(mtcnn) == 4
    assert _found(haar, faces) <= 2  # misses the small astronaut and the turned Hopper


def test_detection_on_a_downscaled_copy_reports_full_size_boxes(astronaut: np.ndarray) -> None:
    (box,) = detect_faces(astronaut, max_side=256)
    assert _iou(_corners(box), ASTRONAUT_FACE) > 0.6


_THREADS_SCRIPT = """
import json, sys
import numpy as np
from p3m_lightning.data.face_detection import MTCNN, detect_faces
image = np.load(sys.argv[1])
corners, scores = MTCNN()(image)
print(json.dumps([detect_faces(image), corners.tolist(), scores.tolist()]))
"""


def test_identical_boxes_with_one_and_two_threads(
    group: tuple[np.ndarray, list], tmp_path: Path
) -> None:
    path = tmp_path / "group.npy"
    np.save(path, group[0])
    results = []
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        run = subprocess.run(
            [sys.executable, "-c", _THREADS_SCRIPT, str(path)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        results.append(json.loads(run.stdout))
    (boxes, corners, scores), (boxes_2, corners_2, scores_2) = results
    assert len(boxes) == 4 and boxes == boxes_2
    # The convolutions sum in another order with two threads: last-bit differences only
    # (1e-5 px measured), far below the rounding to whole pixels.
    np.testing.assert_allclose(corners, corners_2, rtol=0, atol=1e-3)
    np.testing.assert_allclose(scores, scores_2, rtol=0, atol=1e-5)


def test_without_the_mtcnn_package_haar_is_used_with_a_warning(
    astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec

    def hide_mtcnn(name: str, *args: object) -> object:
        return None if name == "mtcnn" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", hide_mtcnn)
    face_detection._mtcnn_installed.cache_clear()
    try:
        with pytest.warns(UserWarning, match=r'pip install "mtcnn>=1.0,<2"'):
            boxes = detect_faces(astronaut)
        assert boxes == detect_faces(astronaut, detector="haar")
        with pytest.raises(ModuleNotFoundError, match="privacy.detector=haar"):
            MTCNN()
    finally:
        face_detection._mtcnn_installed.cache_clear()


def test_unknown_detector_is_refused(astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="valid: mtcnn, haar"):
        detect_faces(astronaut, detector="yolo")
