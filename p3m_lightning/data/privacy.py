"""Face obfuscation, the privacy side of P3M-10k.

P3M-10k ships its training and P3M-500-P images with the faces blurred. This module reproduces
that look on new images (`obfuscate_faces`), either from a given face mask (the P3M-10k
``facemask/*.png``) or from the faces `detect_faces` finds (`p3m_lightning.data.face_detection`:
MTCNN, or OpenCV's Haar cascades), and decides, failing closed, which region of an image must
be obfuscated (`find_face_region`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from p3m_lightning.data.face_detection import DETECTORS, check_image, detect_faces

METHODS = ("blur", "mosaic", "fill")

# Defaults of `obfuscate_faces`' ``strength``, a fraction of the face size (see there). A sigma
# of a tenth of the face width smears eyes, nose and mouth (each ~0.1-0.2 of the face) into the
# skin, which is what makes the P3M-10k faces unrecognisable; five mosaic blocks across a face
# leave no facial feature resolved.
DEFAULT_STRENGTH = {"blur": 0.1, "mosaic": 0.2}


def face_mask_from_boxes(
    shape: Sequence[int], boxes: Sequence[Sequence[int]], margin: float = 0.15
) -> np.ndarray:
    """Draw a filled ellipse over each face box, the box grown by ``margin`` on every side.

    Detector boxes are tight at the cheeks (Haar's also run only from the brows to below the
    mouth, MTCNN's from the forehead to the chin); the margin (a fraction of the box's
    width/height added on each side) takes in forehead, chin and ears.

    Args:
        shape: Image shape; only the first two entries (H, W) are used.
        boxes: ``(x, y, w, h)`` face boxes in pixels.
        margin: Growth on each side, as a fraction of the box size.

    Returns:
        HxW uint8 mask, 255 on faces and 0 elsewhere.
    """
    height, width = int(shape[0]), int(shape[1])
    mask = np.zeros((height, width), np.uint8)
    for x, y, w, h in boxes:
        # Fixed-point (shift=4) coordinates keep odd-sized boxes centred to 1/16 px.
        center = (round((x + w / 2) * 16), round((y + h / 2) * 16))
        axes = (round(w * (0.5 + margin) * 16), round(h * (0.5 + margin) * 16))
        cv2.ellipse(mask, center, axes, 0, 0, 360, 255, thickness=-1, shift=4)
    return mask


def _check_mask(face_mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Return ``face_mask`` as an HxW bool array, or raise ValueError if it does not fit."""
    if not isinstance(face_mask, np.ndarray) or face_mask.shape != shape[:2]:
        got = face_mask.shape if isinstance(face_mask, np.ndarray) else type(face_mask).__name__
        raise ValueError(
            f"expected an HxW face mask of shape {shape[:2]} (read P3M-10k facemask PNGs with "
            f"cv2.IMREAD_GRAYSCALE), got {got}"
        )
    if not (face_mask.dtype == np.bool_ or np.issubdtype(face_mask.dtype, np.integer)):
        raise ValueError(f"expected a uint8 or bool face mask, got dtype {face_mask.dtype}")
    return face_mask != 0


def _obfuscate_region(
    patch: np.ndarray, method: str, strength: float, face_size: int, color: np.ndarray | None
) -> np.ndarray:
    """Return an obfuscated copy of ``patch`` (a face with its surroundings)."""
    if method == "blur":
        sigma = max(1.0, strength * face_size)
        # An explicit odd kernel of +-3 sigma: OpenCV's automatic size is narrower for uint8.
        ksize = 2 * int(np.ceil(3 * sigma)) + 1
        return cv2.GaussianBlur(patch, (ksize, ksize), sigma)
    if method == "mosaic":
        block = max(2, round(strength * face_size))
        h, w = patch.shape[:2]
        small = cv2.resize(
            patch, (max(1, -(-w // block)), max(1, -(-h // block))), interpolation=cv2.INTER_AREA
        )
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    assert color is not None
    return np.broadcast_to(color, patch.shape)


def obfuscate_faces(
    image: np.ndarray,
    face_mask: np.ndarray | None = None,
    method: str = "blur",
    strength: float | None = None,
    *,
    color: Sequence[int] | None = None,
) -> np.ndarray:
    """Make the faces of a portrait unrecognisable, leaving every other pixel untouched.

    Each face (a connected region of the mask) is treated at its own scale: ``strength`` is a
    fraction of the face size, the shorter side of the region's bounding box, so a setting
    looks the same on a 300 px thumbnail and a 2000 px photo.

    Args:
        image: HxWx3 uint8 RGB image; it is not modified.
        face_mask: HxW uint8/bool mask, nonzero on faces (as P3M-10k ``facemask/*.png``). Only
            these pixels change. None detects faces with `detect_faces` and covers each with
            `face_mask_from_boxes`.
        method: ``"blur"`` (Gaussian blur, the P3M-10k look), ``"mosaic"`` (pixelation) or
            ``"fill"`` (one solid colour).
        strength: ``"blur"``: the Gaussian sigma as a fraction of the face size (default 0.1);
            ``"mosaic"``: the block side as a fraction of the face size (default 0.2). Unused
            by ``"fill"``.
        color: ``"fill"`` colour as RGB; None uses each face region's mean colour.

    Returns:
        A new HxWx3 uint8 image.

    Raises:
        ValueError: On an unknown method, a non-positive strength, or an image or mask of the
            wrong dtype or shape.
    """
    check_image(image)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    if strength is None:
        strength = DEFAULT_STRENGTH.get(method, 0.0)
    elif method != "fill" and not strength > 0:
        raise ValueError(f"strength must be > 0, got {strength}")
    if face_mask is None:
        face_mask = face_mask_from_boxes(image.shape, detect_faces(image))
    mask = _check_mask(face_mask, image.shape)

    out = image.copy()
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), 8)
    height, width = mask.shape
    for label in range(1, count):
        x, y, w, h = (int(v) for v in stats[label, :4])
        face_size = min(w, h)
        # Blur reads beyond the face; the context margin keeps the result free of image-border
        # artefacts at the face's edge.
        pad = int(np.ceil(3 * strength * face_size)) + 1 if method == "blur" else 0
        x0, y0 = max(0, x - pad), max(0, y - pad)
        x1, y1 = min(width, x + w + pad), min(height, y + h + pad)
        region = labels[y0:y1, x0:x1] == label
        fill = None
        if method == "fill":
            fill = np.asarray(
                color if color is not None else image[y0:y1, x0:x1][region].mean(axis=0).round(),
                dtype=np.uint8,
            )
            if fill.shape != (3,):
                raise ValueError(f"expected an RGB fill colour of 3 values, got {color!r}")
        done = _obfuscate_region(image[y0:y1, x0:x1], method, strength, face_size, fill)
        out[y0:y1, x0:x1][region] = done[region]
    return out


ON_NO_FACE = ("person", "head", "skip", "error")
"""What to do with an image for which neither a face mask nor the detector gives a face."""

ON_PARTIAL = ("person", "head", "faces")
"""What to obfuscate besides the faces the detector finds in an image without face mask: the
detector may have missed others (turned, occluded, small, in profile), and nothing tells how
many faces an image holds. ``person`` and ``head`` add that fallback region of the matte (so a
missed face inside it is covered whatever the detector did); ``faces`` trusts the detector."""

SOURCES = ("mask", "detector", "person", "head", "skipped")
"""How a face region was established: the dataset's mask, the detector (plus the ``on_partial``
region), a fallback, or not at all (the image must not be written or used)."""

FALLBACKS = ("person", "head")
"""The sources that are a fallback region of the matte."""

HEAD_FRACTION = 0.5
"""Share of the person's height, from the top of the silhouette, that the ``head`` fallback
covers: generous for head-and-shoulders portraits (the head is about the top third) and still
covering the head of an upright full-body shot."""


def _check_policy(on_no_face: str, on_partial: str, detector: str) -> None:
    """Raise a ValueError naming the setting that has no valid value."""
    if on_no_face not in ON_NO_FACE:
        raise ValueError(f"on_no_face must be one of {ON_NO_FACE}, got {on_no_face!r}")
    if on_partial not in ON_PARTIAL:
        raise ValueError(f"on_partial must be one of {ON_PARTIAL}, got {on_partial!r}")
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")


class PrivacyError(RuntimeError):
    """No face region could be established and ``on_no_face="error"`` was asked for."""


@dataclass(frozen=True)
class FaceRegion:
    """Where an image must be obfuscated, and how that was decided.

    Attributes:
        mask: ``(H, W)`` uint8, 255 where to obfuscate; None when ``source`` is ``skipped``
            (the image must then not be written, logged or used as a face-obfuscated image).
        source: one of `SOURCES`.
    """

    mask: np.ndarray | None
    source: str


def _silhouette(alpha: np.ndarray) -> np.ndarray:
    """The person, ``alpha > 0``, grown by 3 % of its size to take in the soft border."""
    person = (alpha > 0).astype(np.uint8)
    ys, xs = np.nonzero(person)
    if ys.size == 0:
        return person
    reach = max(3, round(0.03 * max(int(ys.max() - ys.min()), int(xs.max() - xs.min()))))
    return cv2.dilate(person, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach)))


def person_region(alpha: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8 mask (0/255) of the whole person of an alpha matte.

    A matte without any foreground gives the whole image: with no person to bound it, the only
    region certain to hold every face is everything.
    """
    person = _silhouette(alpha)
    if not person.any():
        return np.full(alpha.shape, 255, np.uint8)
    return person * np.uint8(255)


def head_region(alpha: np.ndarray, fraction: float = HEAD_FRACTION) -> np.ndarray:
    """``(H, W)`` uint8 mask (0/255) of the top ``fraction`` of the person's silhouette.

    Derived from the matte alone, so it needs no detector: for an upright person the head is
    the top of the silhouette. A matte without foreground gives the whole image.
    """
    person = _silhouette(alpha)
    ys = np.nonzero(person.any(axis=1))[0]
    if ys.size == 0:
        return np.full(alpha.shape, 255, np.uint8)
    top, bottom = int(ys[0]), int(ys[-1])
    head = np.zeros_like(person)
    cut = top + int(np.ceil(fraction * (bottom - top + 1)))
    head[top:cut] = person[top:cut]
    return head * np.uint8(255)


def _fallback_region(kind: str, alpha: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """The ``person`` or ``head`` region of ``alpha``; the whole image without a matte."""
    if alpha is None:
        return np.full(shape[:2], 255, np.uint8)
    return person_region(alpha) if kind == "person" else head_region(alpha)


def find_face_region(
    image: np.ndarray,
    face_mask: np.ndarray | None = None,
    alpha: np.ndarray | None = None,
    *,
    on_no_face: str = "person",
    on_partial: str = "person",
    use_detector: bool = True,
    detector: str = "mtcnn",
) -> FaceRegion:
    """Decide where to obfuscate one image, failing closed.

    In order: the face mask when one is given and marks a face (an empty mask is treated as
    missing: a blank file is no proof that the image shows no face); else the faces
    `detect_faces` finds (when ``use_detector``), together with the ``on_partial`` region
    (``person`` or ``head`` of ``alpha``, which covers the faces the detector missed; ``faces``
    adds nothing); else the fallback ``on_no_face``: ``person`` (the whole person of
    ``alpha``), ``head`` (the top of the person, `head_region`), ``skip`` (no region: the
    caller must drop the image) or ``error``. Without ``alpha`` the ``person`` and ``head``
    regions are the whole image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        face_mask: ``(H, W)`` nonzero on faces, or None.
        alpha: ``(H, W)`` uint8 matte of the image, or None.
        on_no_face: one of `ON_NO_FACE`.
        on_partial: one of `ON_PARTIAL`.
        use_detector: False skips the detector, so every image without a mask gets the
            fallback (the guarantee then does not depend on the detector's recall at all).
        detector: which face detector, one of `DETECTORS` (`detect_faces`).

    Raises:
        PrivacyError: ``on_no_face="error"`` and no face region.
        ValueError: an unknown ``on_no_face``, ``on_partial`` or ``detector``.
    """
    _check_policy(on_no_face, on_partial, detector)
    if face_mask is not None:
        given = _check_mask(face_mask, image.shape)
        if given.any():
            return FaceRegion(np.where(given, 255, 0).astype(np.uint8), "mask")
    if use_detector:
        boxes = detect_faces(image, detector=detector)
        if boxes:
            region = face_mask_from_boxes(image.shape, boxes)
            if on_partial != "faces":
                region = np.maximum(region, _fallback_region(on_partial, alpha, image.shape))
            return FaceRegion(region, "detector")
    if on_no_face == "error":
        raise PrivacyError(
            "no face mask and no face found; set privacy.on_no_face to person, head or skip "
            "to handle such images"
        )
    if on_no_face == "skip":
        return FaceRegion(None, "skipped")
    return FaceRegion(_fallback_region(on_no_face, alpha, image.shape), on_no_face)


def obfuscate_region(
    image: np.ndarray, region: FaceRegion, method: str = "blur"
) -> np.ndarray | None:
    """``image`` obfuscated inside ``region.mask``; None for a skipped region."""
    if region.mask is None:
        return None
    return obfuscate_faces(image, region.mask, method=method)


class FaceObfuscator:
    """On-the-fly face obfuscation of dataset images, failing closed (`find_face_region`).

    Used where a dataset must show obfuscated faces but stores clear ones: B-training on your
    own normal portraits, and ``P3M-500-NP-B``, the blurred twin of P3M-500-NP.

    Args:
        method: ``blur``, ``mosaic`` or ``fill`` (`obfuscate_faces`).
        on_no_face: the fallback for images without face mask and detected face (`ON_NO_FACE`).
        use_detector: try the face detector before the fallback.
        on_partial: what is obfuscated besides the detected faces (`ON_PARTIAL`).
        detector: which face detector (`DETECTORS`).
    """

    def __init__(
        self,
        method: str = "blur",
        on_no_face: str = "person",
        use_detector: bool = True,
        on_partial: str = "person",
        detector: str = "mtcnn",
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
        _check_policy(on_no_face, on_partial, detector)
        self.method = method
        self.on_no_face = on_no_face
        self.use_detector = use_detector
        self.on_partial = on_partial
        self.detector = detector

    def __call__(
        self, image: np.ndarray, face_mask: np.ndarray | None, alpha: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """Obfuscate one image.

        Returns:
            The obfuscated ``(H, W, 3)`` uint8 image, the ``(H, W)`` bool region that changed
            (callers give F and B the same pixels there), and the region's source. A
            ``skipped`` image comes back obfuscated whole, so that even a caller that forgot
            to drop it shows no face.
        """
        region = find_face_region(
            image,
            face_mask,
            alpha,
            on_no_face=self.on_no_face,
            on_partial=self.on_partial,
            use_detector=self.use_detector,
            detector=self.detector,
        )
        mask = region.mask if region.mask is not None else np.full(image.shape[:2], 255, np.uint8)
        return obfuscate_faces(image, mask, method=self.method), mask > 0, region.source
