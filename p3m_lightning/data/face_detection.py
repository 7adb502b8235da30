"""Face detectors for the privacy code: MTCNN (the default) and OpenCV's Haar cascades.

MTCNN (Zhang et al., "Joint Face Detection and Alignment Using Multitask Cascaded
Convolutional Networks", IEEE SPL 2016) is a cascade of three small CNNs: P-Net scores every
12 x 12 window of an image pyramid, R-Net and O-Net rescore and refine the surviving windows on
24 and 48 px crops. The networks here are plain PyTorch modules; their weights are the files
that the ``mtcnn`` package (MIT licence) ships, ``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``,
read without importing the package (its ``__init__`` imports TensorFlow, which is not needed).
The README's Privacy section gives both detectors' recall on rotated, occluded, small, profile
and dim faces; without the ``mtcnn`` package `detect_faces` warns and uses Haar.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

Box = tuple[int, int, int, int]

DETECTORS = ("mtcnn", "haar")
"""The face detectors, best recall first."""

DEFAULT_MIN_SIZE = {"mtcnn": 20, "haar": 24}
"""Smallest face side searched, in pixels of the full image. MTCNN's pyramid work and false
detections grow fast below 20 px (its window is 12 px); 24 px is the Haar cascades' window."""

DEFAULT_MAX_SIDE = {"mtcnn": 2048, "haar": 1024}
"""Images whose long side exceeds this are searched at this size. 2048 searches P3M-10k's photos
(about 1080 x 1440) at full resolution, as MTCNN was measured, and bounds the time on larger
photos (faces below ``20 * long side / 2048`` px are then missed); 1024 keeps the three Haar
passes fast, as they were measured."""

MTCNN_THRESHOLDS = (0.6, 0.7, 0.9)
"""Face probability each MTCNN stage needs (P-, R-, O-Net). The paper's last stage takes 0.7;
on the test set of ``experiments/face_detector_study``, 0.9 instead finds 168 rather than 178
of 242 faces with 6 rather than 18 false detections."""

_PYRAMID_FACTOR = 0.709
"""Scale step of MTCNN's image pyramid, the authors' (about 1 / sqrt(2): area halves)."""

_FRONTAL = "haarcascade_frontalface_default.xml"
_PROFILE = "haarcascade_profileface.xml"


def check_image(image: np.ndarray) -> None:
    """Raise a ValueError unless ``image`` is an HxWx3 uint8 array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        got = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got dtype {got}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {image.shape}")


def _caffe_flatten(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, W * H * C)`` in the order the dense weights were trained on.

    The original Caffe networks were trained on transposed images, so their first dense layer
    reads the feature map column by column.
    """
    return x.permute(0, 3, 2, 1).flatten(1)


class PNet(nn.Module):
    """MTCNN's proposal network, fully convolutional over any image of at least 12 x 12.

    ``forward``: ``(N, 3, H, W)`` RGB scaled by `_to_tensor` -> box offsets ``(N, 4, h, w)``
    (x1, y1, x2, y2, as fractions of the window side) and face probability ``(N, h, w)``, one
    per 12 x 12 window at stride 2: ``h = ceil((H - 2) / 2) - 4``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        # Caffe's pooling rounds its output size up; the weights were trained with it.
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = nn.PReLU(32)
        self.regress = nn.Conv2d(32, 4, 1)
        self.classify = nn.Conv2d(32, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.regress(x), torch.softmax(self.classify(x), dim=1)[:, 1]


class RNet(nn.Module):
    """MTCNN's refinement network.

    ``forward``: ``(N, 3, 24, 24)`` crops scaled by `_to_tensor` -> box offsets ``(N, 4)``
    (fractions of the crop side) and face probability ``(N,)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.regress = nn.Linear(128, 4)
        self.classify = nn.Linear(128, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_caffe_flatten(self.prelu3(self.conv3(x)))))
        return self.regress(x), torch.softmax(self.classify(x), dim=1)[:, 1]


class ONet(nn.Module):
    """MTCNN's output network.

    ``forward``: ``(N, 3, 48, 48)`` crops scaled by `_to_tensor` -> box offsets ``(N, 4)``
    (fractions of the crop side), five landmarks ``(N, 10)`` (x of eyes, nose, mouth corners,
    then their y, as fractions of the crop side) and face probability ``(N,)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.regress = nn.Linear(256, 4)
        self.landmarks = nn.Linear(256, 10)
        self.classify = nn.Linear(256, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_caffe_flatten(self.prelu4(self.conv4(x)))))
        return self.regress(x), self.landmarks(x), torch.softmax(self.classify(x), dim=1)[:, 1]


def mtcnn_weights_dir() -> Path:
    """The folder of the ``mtcnn`` package's weight files, found without importing it.

    Raises:
        ModuleNotFoundError: If the ``mtcnn`` package is not installed.
    """
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the MTCNN face detector reads its weights from the 'mtcnn' package: "
            'pip install "mtcnn>=1.0,<2" (or set privacy.detector=haar)'
        )
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "weights"


def read_keras_weights(name: str) -> list[np.ndarray]:
    """The Keras ``get_weights()`` list of one MTCNN network, as float32 arrays.

    Args:
        name: ``pnet``, ``rnet`` or ``onet``.

    Raises:
        ModuleNotFoundError: If the ``mtcnn`` package is not installed.
        FileNotFoundError: If it has no such weight file (a release with another layout).
    """
    # joblib comes with the mtcnn package; imported here so that Haar works without either.
    import joblib

    path = mtcnn_weights_dir() / f"{name}.lz4"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no MTCNN weight file here; this release of the 'mtcnn' package has "
            'another layout: pip install "mtcnn>=1.0,<2"'
        )
    return [np.asarray(array, dtype=np.float32) for array in joblib.load(path)]


def load_keras_weights(net: nn.Module, arrays: Sequence[np.ndarray]) -> None:
    """Copy a Keras ``get_weights()`` list into ``net``, its layers taken in definition order.

    Keras keeps conv kernels as ``(kh, kw, in, out)``, dense kernels as ``(in, out)`` and PReLU
    slopes as ``(1, 1, C)`` or ``(C,)``; PyTorch wants ``(out, in, kh, kw)``, ``(out, in)`` and
    ``(C,)``. Pooling layers hold no weights.

    Raises:
        ValueError: If the list does not fit ``net`` (count or shape), naming the layer.
    """
    targets: list[tuple[str, torch.Tensor, tuple[int, ...] | None]] = []
    for name, layer in net.named_children():
        if isinstance(layer, nn.Conv2d):
            targets += [
                (f"{name}.weight", layer.weight, (3, 2, 0, 1)),
                (f"{name}.bias", layer.bias, None),
            ]
        elif isinstance(layer, nn.Linear):
            targets += [
                (f"{name}.weight", layer.weight, (1, 0)),
                (f"{name}.bias", layer.bias, None),
            ]
        elif isinstance(layer, nn.PReLU):
            targets.append((f"{name}.weight", layer.weight, None))
    if len(arrays) != len(targets):
        raise ValueError(
            f"{type(net).__name__} takes {len(targets)} weight arrays, the file holds {len(arrays)}"
        )
    with torch.no_grad():
        for (name, param, axes), array in zip(targets, arrays, strict=True):
            value = array.transpose(axes) if axes else array.reshape(-1)
            if value.shape != tuple(param.shape):
                raise ValueError(
                    f"{type(net).__name__}.{name}: expected {tuple(param.shape)}, the file's "
                    f"array gives {value.shape}"
                )
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 RGB -> ``(N, 3, H, W)`` float32 in [-1, 1), as MTCNN was trained."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return (x - 127.5) / 128.0


def _square(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` x1, y1, x2, y2 boxes grown to squares about their centres (the next network
    sees square crops)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    x1, y1 = boxes[:, 0] + (w - side) / 2, boxes[:, 1] + (h - side) / 2
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``(N, 4)`` boxes moved by a network's ``(N, 4)`` offsets (fractions of the box size)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return boxes + offsets * np.stack([w, h, w, h], axis=1)


def _nms(
    boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union"
) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first.

    A box is dropped when its overlap with a kept, better box exceeds ``threshold``: the
    intersection over the union (``union``) or over the smaller box (``min``, MTCNN's last
    stage, which also removes a small box inside a face's larger one). A stable sort makes
    ties deterministic.
    """
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        iw = np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0])
        ih = np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1])
        inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
        if mode == "min":
            base = np.minimum(area[best], area[rest])
        else:
            base = area[best] + area[rest] - inter
        order = rest[inter <= threshold * np.maximum(base, 1e-6)]
    return np.asarray(keep, dtype=np.int64)


def _crops(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """``(N, size, size, 3)`` uint8: each box cut out of ``image`` (black beyond its border)
    and resized."""
    height, width = image.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(np.round(boxes).astype(int)):
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if x2 - x1 < 2 or y2 - y1 < 2 or sx2 <= sx1 or sy2 <= sy1:
            continue
        patch = np.zeros((y2 - y1, x2 - x1, 3), np.uint8)
        patch[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
        shrink = x2 - x1 > size
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        out[k] = cv2.resize(patch, (size, size), interpolation=interpolation)
    return out


class MTCNN:
    """MTCNN's three-stage cascade, on CPU in float32, with the ``mtcnn`` package's weights.

    Args:
        thresholds: Face probability each stage needs (P-, R-, O-Net).

    Raises:
        ModuleNotFoundError: If the ``mtcnn`` package is not installed.
        FileNotFoundError, ValueError: If its weight files do not have the expected layout.
    """

    def __init__(self, thresholds: tuple[float, float, float] = MTCNN_THRESHOLDS) -> None:
        self.thresholds = thresholds
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for net, name in ((self.pnet, "pnet"), (self.rnet, "rnet"), (self.onet, "onet")):
            load_keras_weights(net, read_keras_weights(name))
            net.eval()

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, min_size: float = 20) -> tuple[np.ndarray, np.ndarray]:
        """Find the faces in one image.

        Args:
            image: HxWx3 uint8 RGB.
            min_size: Smallest face side to search, in pixels of ``image`` (at least 12).

        Returns:
            Boxes ``(N, 4)`` float32 x1, y1, x2, y2 in pixels of ``image`` (possibly reaching
            beyond it), and their face probabilities ``(N,)``, best first.
        """
        t1, t2, t3 = self.thresholds
        none = np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        height, width = image.shape[:2]

        # Stage 1: P-Net over the pyramid; a 12 px window at scale s is a 12 / s px face.
        scale = 12.0 / max(12.0, float(min_size))
        proposals, scores, offsets = [], [], []
        while min(height, width) * scale >= 12:
            size = (math.ceil(width * scale), math.ceil(height * scale))
            level = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            reg, prob = self.pnet(_to_tensor(level[None]))
            ys, xs = np.nonzero(prob[0].numpy() >= t1)
            if ys.size:
                x1, y1 = 2 * xs / scale, 2 * ys / scale
                boxes = np.stack([x1, y1, x1 + 12 / scale, y1 + 12 / scale], axis=1)
                score = prob[0].numpy()[ys, xs]
                keep = _nms(boxes, score, 0.5)
                proposals.append(boxes[keep])
                scores.append(score[keep])
                offsets.append(reg[0].numpy()[:, ys, xs].T[keep])
            scale *= _PYRAMID_FACTOR
        if not proposals:
            return none
        boxes, score, offset = (np.concatenate(a) for a in (proposals, scores, offsets))
        keep = _nms(boxes, score, 0.7)
        boxes = _square(_regress(boxes[keep], offset[keep]))

        # Stage 2: R-Net on 24 px crops.
        reg, prob = self.rnet(_to_tensor(_crops(image, boxes, 24)))
        keep = prob.numpy() >= t2
        if not keep.any():
            return none
        boxes, score, offset = boxes[keep], prob.numpy()[keep], reg.numpy()[keep]
        keep = _nms(boxes, score, 0.7)
        boxes = _square(_regress(boxes[keep], offset[keep]))

        # Stage 3: O-Net on 48 px crops.
        reg, _, prob = self.onet(_to_tensor(_crops(image, boxes, 48)))
        keep = prob.numpy() >= t3
        if not keep.any():
            return none
        boxes, score = _regress(boxes[keep], reg.numpy()[keep]), prob.numpy()[keep]
        keep = _nms(boxes, score, 0.7, mode="min")
        return boxes[keep].astype(np.float32), score[keep].astype(np.float32)


@functools.lru_cache(maxsize=1)
def _mtcnn() -> MTCNN:
    """The MTCNN cascade, its weights loaded once per process on first use."""
    return MTCNN()


@functools.lru_cache(maxsize=1)
def _cascades() -> tuple[cv2.CascadeClassifier, cv2.CascadeClassifier]:
    """Load the frontal and profile Haar cascades once per process.

    Raises:
        FileNotFoundError: If this OpenCV build does not bundle the cascades.
    """
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    loaded = []
    for name in (_FRONTAL, _PROFILE):
        path = os.path.join(folder, name) if folder else None
        cascade = cv2.CascadeClassifier(path) if path and os.path.isfile(path) else None
        if cascade is None or cascade.empty():
            raise FileNotFoundError(
                f"OpenCV {cv2.__version__} has no bundled Haar cascade {name!r} (looked in "
                f"{folder!r}); OpenCV 5 dropped them: install opencv-python-headless<5"
            )
        loaded.append(cascade)
    return loaded[0], loaded[1]


def _suppress_duplicates(boxes: list[Box], overlap: float = 0.5) -> list[Box]:
    """Keep the larger of any two boxes that mostly cover each other.

    The three cascade passes often find the same face; one face should count once.
    """
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
        x, y, w, h = box
        duplicate = False
        for kx, ky, kw, kh in kept:
            iw = min(x + w, kx + kw) - max(x, kx)
            ih = min(y + h, ky + kh) - max(y, ky)
            if iw > 0 and ih > 0 and iw * ih > overlap * w * h:
                duplicate = True
                break
        if not duplicate:
            kept.append(box)
    return kept


def _haar_faces(image: np.ndarray, min_size: int, max_side: int) -> list[Box]:
    """Faces found by OpenCV's frontal and profile (both directions) Haar cascades."""
    frontal, profile = _cascades()
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if scale < 1:
        gray = cv2.resize(
            gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA
        )
    # Equalising makes the cascades' contrast features work on dim or washed-out portraits.
    gray = cv2.equalizeHist(gray)
    side = max(1, round(min_size * scale))
    params = {"scaleFactor": 1.1, "minNeighbors": 5, "minSize": (side, side)}

    found = [*frontal.detectMultiScale(gray, **params), *profile.detectMultiScale(gray, **params)]
    # The profile cascade only knows faces looking one way; the mirror image covers the other.
    mirror_width = gray.shape[1]
    for x, y, w, h in profile.detectMultiScale(np.ascontiguousarray(gray[:, ::-1]), **params):
        found.append((mirror_width - x - w, y, w, h))

    boxes: list[Box] = [
        (round(x / scale), round(y / scale), round(w / scale), round(h / scale))
        for x, y, w, h in (map(int, box) for box in found)
    ]
    return _suppress_duplicates(boxes)


def _mtcnn_faces(image: np.ndarray, min_size: int, max_side: int) -> list[Box]:
    """Faces found by MTCNN, as ``(x, y, w, h)`` boxes clipped to the image, largest first."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    searched = image
    if scale < 1:
        size = (round(width * scale), round(height * scale))
        searched = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    corners, _ = _mtcnn()(searched, max(12.0, min_size * scale))
    boxes: list[Box] = []
    for x1, y1, x2, y2 in corners / scale:
        x1, y1 = max(0, round(float(x1))), max(0, round(float(y1)))
        x2, y2 = min(width, round(float(x2))), min(height, round(float(y2)))
        if x2 > x1 and y2 > y1:
            boxes.append((x1, y1, x2 - x1, y2 - y1))
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


@functools.lru_cache(maxsize=1)
def _mtcnn_installed() -> bool:
    """Whether the ``mtcnn`` package is installed; warns once per process if not."""
    if importlib.util.find_spec("mtcnn") is not None:
        return True
    warnings.warn(
        "the 'mtcnn' package is not installed, so faces are detected with OpenCV's Haar "
        "cascades, which find about half as many (README, Privacy): "
        'pip install "mtcnn>=1.0,<2", or set privacy.detector=haar to choose Haar',
        stacklevel=3,
    )
    return False


def detect_faces(
    image: np.ndarray,
    min_size: int | None = None,
    *,
    detector: str = "mtcnn",
    max_side: int | None = None,
) -> list[Box]:
    """Find faces with MTCNN (default) or OpenCV's frontal and profile Haar cascades.

    ``mtcnn`` without the ``mtcnn`` package installed warns once and uses Haar.

    Args:
        image: HxWx3 uint8 RGB image.
        detector: One of `DETECTORS`.
        min_size: Smallest face side to look for, in pixels of ``image``; None takes the
            detector's `DEFAULT_MIN_SIZE`.
        max_side: Images whose long side exceeds this are searched at this size (boxes are
            still returned in ``image`` pixels); None takes the detector's `DEFAULT_MAX_SIDE`.

    Returns:
        Boxes ``(x, y, w, h)`` in pixels, one per face, largest first.

    Raises:
        ValueError: If ``image`` is not an HxWx3 uint8 array, or on an unknown detector.
        FileNotFoundError: If OpenCV lacks its bundled cascades (OpenCV 5) and Haar is used, or
            the ``mtcnn`` package's weight files are not where release 1.x keeps them.
    """
    check_image(image)
    if detector not in DETECTORS:
        raise ValueError(f"unknown face detector {detector!r}; valid: {', '.join(DETECTORS)}")
    if detector == "mtcnn" and not _mtcnn_installed():
        detector = "haar"
    min_size = DEFAULT_MIN_SIZE[detector] if min_size is None else min_size
    max_side = DEFAULT_MAX_SIDE[detector] if max_side is None else max_side
    if detector == "mtcnn":
        return _mtcnn_faces(image, min_size, max_side)
    return _haar_faces(image, min_size, max_side)
