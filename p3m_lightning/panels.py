"""The pictures of a prediction, drawn one way for the panel callback and the report's gallery.

A photo is shown face-obfuscated unless privacy is waived explicitly, failing closed
(`p3m_lightning.data.privacy.find_face_region`); mattes are shown as gray images and the error
``|pred - alpha|`` in the inferno colour map (black = exact).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from p3m_lightning.data.privacy import (
    DETECTORS,
    ON_NO_FACE,
    ON_PARTIAL,
    find_face_region,
    obfuscate_region,
)
from p3m_lightning.imageio import alpha_to_uint8
from p3m_lightning.normalization import rgb8


@dataclass(frozen=True)
class DisplayPrivacy:
    """How photos are obfuscated before they are shown or written: a run's ``privacy``.

    Attributes:
        allow_unobfuscated: show photos as they are (an explicit waiver).
        method: ``blur``, ``mosaic`` or ``fill`` (`p3m_lightning.data.privacy.obfuscate_faces`).
        on_no_face: ``person``, ``head``, ``skip`` or ``error`` (`find_face_region`).
        use_detector: try the face detector before the ``on_no_face`` fallback.
        on_partial: what else is obfuscated when the detector finds faces (``person``,
            ``head`` or ``faces``: a face it missed must not stay clear).
        detector: which face detector, ``mtcnn`` or ``haar``
            (`p3m_lightning.data.face_detection.detect_faces`).
    """

    allow_unobfuscated: bool = False
    method: str = "blur"
    on_no_face: str = "person"
    use_detector: bool = True
    on_partial: str = "person"
    detector: str = "mtcnn"

    def __post_init__(self) -> None:
        if self.on_no_face not in ON_NO_FACE:
            raise ValueError(f"on_no_face must be one of {ON_NO_FACE}, got {self.on_no_face!r}")
        if self.on_partial not in ON_PARTIAL:
            raise ValueError(f"on_partial must be one of {ON_PARTIAL}, got {self.on_partial!r}")
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {self.detector!r}")


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8 -> ``(H, W, 3)`` uint8 with three equal channels."""
    return np.repeat(gray[..., None], 3, axis=2)


def error_map(pred: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``|pred - alpha|`` (both ``(H, W)`` in [0, 1]) as ``(H, W, 3)`` uint8 RGB, inferno."""
    error = alpha_to_uint8(np.abs(pred.astype(np.float32) - alpha.astype(np.float32)))
    return cv2.cvtColor(cv2.applyColorMap(error, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def shown_photo(
    batch: Mapping[str, Any], privacy: DisplayPrivacy, index: int = 0
) -> tuple[np.ndarray | None, str]:
    """The photo of sample ``index`` of an evaluation batch, as it may be shown or written.

    Obfuscated at full resolution (detection needs the detail, and a face blurred before
    shrinking stays unrecognisable at any display size): inside the batch's ``face_mask`` (or
    ``privacy_mask``, where the dataset obfuscated on the fly) when it has one, else around the
    faces the detector finds, else by the ``on_no_face`` fallback on the batch's true alpha.

    Args:
        batch: ``image`` ``(B, 3, H, W)`` ImageNet-normalised, ``alpha`` ``(B, 1, H, W)`` in
            [0, 1], optionally ``face_mask`` or ``privacy_mask`` ``(B, 1, H, W)`` nonzero on
            faces.
        privacy: the obfuscation settings.
        index: the sample.

    Returns:
        ``(H, W, 3)`` uint8 RGB, or None where no face region could be established and
        ``on_no_face`` is ``skip`` (nothing may be shown); and how the face region was found
        (``unobfuscated`` when privacy was waived).

    Raises:
        PrivacyError: no face region and ``on_no_face`` is ``error``.
    """
    image = rgb8(batch["image"][index : index + 1])
    if privacy.allow_unobfuscated:
        return image, "unobfuscated"
    alpha = batch["alpha"][index, 0].detach().float().cpu().numpy()
    given = batch.get("face_mask", batch.get("privacy_mask"))
    mask = given[index, 0].cpu().numpy().astype(np.uint8) if given is not None else None
    region = find_face_region(
        image,
        mask,
        alpha_to_uint8(alpha),
        on_no_face=privacy.on_no_face,
        on_partial=privacy.on_partial,
        use_detector=privacy.use_detector,
        detector=privacy.detector,
    )
    return obfuscate_region(image, region, privacy.method), region.source
