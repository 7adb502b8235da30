"""Face-detector recall on turned, occluded, small, profile, dim and group faces: MTCNN vs Haar.

Builds a test set of 1080 x 1440 images from photographs shipped inside packages (nothing is
downloaded or committed), runs `p3m_lightning.data.face_detection.detect_faces` with each
detector (and MTCNN with the paper's last-stage threshold, 0.7, beside the project's 0.9) on
every image and prints Markdown tables: recall per kind of face, false detections per image,
silent failures, faces still found after the project's obfuscation, and CPU time.

Sources of the faces:

- ``skimage.data.astronaut()`` (NASA, public domain) and ``camera()`` (the cameraman, a 3/4
  profile); matplotlib's ``grace_hopper.jpg`` (US Navy, public domain);
- the ``insightface`` 2.1 wheel's ``insightface/data/images/t1.jpg`` (a six-person group photo)
  and ``Tom_Hanks_54745.png`` (a 112 px face crop, used in the multi-face composites only),
  read from the wheel file without installing it;
- negatives: the wheel's four ``mask_*.jpg`` (face masks, no face) and scikit-image's coffee,
  chelsea (a cat), rocket, hubble_deep_field, brick, grass and gravel.

The source faces' boxes were placed by eye (MTCNN's boxes, checked); every variant's boxes
follow from its construction. Each identity gives a portrait crop with its face in the upper
part, and from it: rotations about the face by 15 to 90 degrees, four occlusions (a bar over
the eyes, a skin blob over the mouth, a hand-like blob, half the face covered), the portrait
pasted small (a face 20 to 60 px high) into a texture, the face cut by the image edge at 60 %
and 40 % of its width ("profile-cut", and mirrored), and low light or blur (dark with noise,
very dark, Gaussian and motion blur). Twelve composites paste 2 to 4 faces of 40 to 320 px;
the group photo is shown at two scales. The base, group and three multi-face images are also
obfuscated inside their face boxes with the project's ``blur`` and ``mosaic``
(`obfuscate_faces`): there a found face is one still detected after obfuscation.

Scoring: a face is found when a detection has an IoU of at least 0.3 with its box or covers
at least half of it; a detection is false when it matches no face that way, does not lie at
least half inside one (a partial hit on a face is no false alarm here) and is not on a region
marked as ignored (a painted portrait on the group photo's wall). A silent failure is an
image with a missed face on which the detector found something else, so the ``on_no_face``
fallback does not fire.

Run from the repository root on one thread (CPU times are per image, single-threaded; about
half an hour for both detectors)::

    pip download insightface==2.1 --no-deps --only-binary=:all: -d /tmp/wheels
    OMP_NUM_THREADS=1 python experiments/face_detector_study/study.py \\
        /tmp/wheels/insightface-2.1-py3-none-any.whl > experiments/face_detector_study/results.md
"""

from __future__ import annotations

import argparse
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2
import matplotlib.cbook
import numpy as np
import skimage.data
import torch

from p3m_lightning.data.face_detection import DEFAULT_MIN_SIZE, MTCNN, MTCNN_THRESHOLDS
from p3m_lightning.data.privacy import detect_faces, face_mask_from_boxes, obfuscate_faces

W, H = 1080, 1440
BoxF = tuple[float, float, float, float]
"""x1, y1, x2, y2 in pixels."""

IDENTITIES: dict[str, tuple[str, tuple[int, int, int, int], float]] = {
    "astronaut": ("astronaut", (181, 63, 267, 174), 4.0),
    "grace": ("grace", (181, 120, 354, 340), 2.6),
    "camera": ("camera", (194, 114, 256, 198), 4.5),
    "t1_rachel": ("t1", (53, 261, 170, 396), 3.0),
    "t1_monica": ("t1", (272, 149, 369, 262), 3.0),
    "t1_ross": ("t1", (465, 263, 573, 408), 3.0),
    "t1_chandler": ("t1", (740, 343, 840, 477), 3.0),
    "t1_joey": ("t1", (906, 60, 1011, 200), 3.0),
    "t1_phoebe": ("t1", (1132, 276, 1227, 397), 3.0),
}
"""Identity -> (source photo, face box in it, crop width in face widths)."""

T1_IGNORE = [(296, 52, 364, 110)]
"""A small painted portrait on the wall of the group photo: neither a face to find nor a false
detection."""

HANKS_FACE = (2, 4, 84, 112)
CLASSES = (
    "base", "rot15", "rot30", "rot45", "rot60", "rot90", "occlusion", "small20", "small30",
    "small40", "small60", "profile_cut", "lowlight_blur", "multi", "group_real", "negative",
)  # fmt: skip
GROUPS = {
    "upright portrait": ("base",),
    "turned 15-30 degrees": ("rot15", "rot30"),
    "turned 45-60 degrees": ("rot45", "rot60"),
    "turned 90 degrees": ("rot90",),
    "occluded (eyes, mouth, hand, half)": ("occlusion",),
    "small, 20-30 px high": ("small20", "small30"),
    "small, 40-60 px high": ("small40", "small60"),
    "cut by the image edge (profile-like)": ("profile_cut",),
    "dark or blurred": ("lowlight_blur",),
    "2-4 pasted faces, 40-320 px": ("multi",),
    "real group photo, 6 faces at 2 scales": ("group_real",),
}
"""The README's rows: kinds of face, each one or more variants of the test set."""
OBFUSCATED = ("blur", "mosaic")
BACKGROUNDS = ("grass", "gravel", "brick", "coffee", "rocket")
SKIN = (205, 160, 130)


@dataclass
class Sample:
    """One test image with its faces (boxes) and regions where detections are ignored."""

    name: str
    cls: str
    image: np.ndarray
    boxes: list[BoxF]
    ignore: list[BoxF] = field(default_factory=list)


def _rgb_from_bytes(data: bytes) -> np.ndarray:
    return cv2.cvtColor(
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )


def _sources(wheel: str) -> dict[str, np.ndarray]:
    """The source photographs, by name."""
    grace = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with zipfile.ZipFile(wheel) as archive:
        packaged = {
            name: _rgb_from_bytes(archive.read(f"insightface/data/images/{file}"))
            for name, file in [
                ("t1", "t1.jpg"),
                ("hanks", "Tom_Hanks_54745.png"),
                *[(f"mask_{c}", f"mask_{c}.jpg") for c in ("white", "black", "blue", "green")],
            ]
        }
    return {
        "astronaut": skimage.data.astronaut(),
        "camera": cv2.cvtColor(skimage.data.camera(), cv2.COLOR_GRAY2RGB),
        "grace": cv2.cvtColor(cv2.imread(str(grace)), cv2.COLOR_BGR2RGB),
        **packaged,
    }


def _texture(name: str) -> np.ndarray:
    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.resize(image[..., :3], (W, H), interpolation=cv2.INTER_CUBIC)


def _portrait(src: dict[str, np.ndarray], identity: str) -> tuple[np.ndarray, BoxF, list[BoxF]]:
    """A 3:4 crop with the face in its upper part, the face box and ignored regions in it."""
    photo, (x1, y1, x2, y2), widths = IDENTITIES[identity]
    image = src[photo]
    crop_w = (x2 - x1) * widths
    crop_h = crop_w * 4 / 3
    left = round((x1 + x2) / 2 - crop_w / 2)
    top = round(y1 - 0.3 * crop_h)
    right = round((x1 + x2) / 2 - crop_w / 2 + crop_w)
    bottom = round(y1 - 0.3 * crop_h + crop_h)
    pad = max(0, -left, -top, right - image.shape[1], bottom - image.shape[0])
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    crop = padded[top + pad : bottom + pad, left + pad : right + pad]
    ignore = T1_IGNORE if identity == "t1_monica" else []
    shifted = [(a - left, b - top, c - left, d - top) for a, b, c, d in ignore]
    return crop, (x1 - left, y1 - top, x2 - left, y2 - top), shifted


def _fit(crop: np.ndarray, box: BoxF) -> tuple[np.ndarray, BoxF]:
    """``crop`` resized to W x H and ``box`` with it."""
    sx, sy = W / crop.shape[1], H / crop.shape[0]
    interpolation = cv2.INTER_AREA if sx < 1 else cv2.INTER_CUBIC
    image = cv2.resize(crop, (W, H), interpolation=interpolation)
    return image, (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


def _turned_box(box: BoxF, turn: np.ndarray) -> BoxF:
    """Bounding box of the ellipse inscribed in ``box`` after the affine map ``turn``."""
    x1, y1, x2, y2 = box
    t = np.linspace(0, 2 * np.pi, 90)
    points = np.stack(
        [
            (x1 + x2) / 2 + (x2 - x1) / 2 * np.cos(t),
            (y1 + y2) / 2 + (y2 - y1) / 2 * np.sin(t),
            np.ones_like(t),
        ]
    )
    q = turn @ points
    return _clip((q[0].min(), q[1].min(), q[0].max(), q[1].max()))


def _clip(box: BoxF) -> BoxF:
    return (max(0, box[0]), max(0, box[1]), min(W, box[2]), min(H, box[3]))


def _variants(
    src: dict[str, np.ndarray], index: int, identity: str, rng: np.random.Generator
) -> Iterator[Sample]:
    """The base portrait of one identity and its turned, occluded, small, cut and dim copies."""
    crop, crop_box, crop_ignore = _portrait(src, identity)
    image, box = _fit(crop, crop_box)
    ignore = [_fit(crop, g)[1] for g in crop_ignore]
    yield Sample(f"base_{identity}", "base", image, [box], ignore)
    fx1, fy1, fx2, fy2 = box
    fw, fh = fx2 - fx1, fy2 - fy1
    cx, cy = (fx1 + fx2) / 2, (fy1 + fy2) / 2

    for angle in (15, 30, 45, 60, 90):
        signed = angle if index % 2 == 0 else -angle
        turn = cv2.getRotationMatrix2D((cx, cy), signed, 1.0)
        turned = cv2.warpAffine(image, turn, (W, H), borderMode=cv2.BORDER_REPLICATE)
        yield Sample(
            f"rot{angle}_{identity}", f"rot{angle}", turned, [_turned_box(box, turn)],
            [_turned_box(g, turn) for g in ignore],
        )  # fmt: skip

    bar = image.copy()
    top_left = (int(fx1 - 0.05 * fw), int(fy1 + 0.22 * fh))
    cv2.rectangle(bar, top_left, (int(fx2 + 0.05 * fw), int(fy1 + 0.45 * fh)), (0, 0, 0), -1)
    mouth = image.copy()
    axes = (int(0.38 * fw), int(0.2 * fh))
    cv2.ellipse(mouth, (int(cx), int(fy1 + 0.8 * fh)), axes, 0, 0, 360, SKIN, -1)
    hand = image.copy()
    px, py = int(fx1 + 0.35 * fw), int(fy1 + 0.45 * fh)
    palm = (int(0.28 * fw), int(0.3 * fh))
    cv2.ellipse(hand, (px, py + int(0.25 * fh)), palm, 15, 0, 360, SKIN, -1)
    for k in range(4):
        x = int(fx1 + (0.1 + 0.14 * k) * fw)
        tip = (x + int(0.05 * fw), int(fy1 + 0.15 * fh))
        cv2.line(hand, (x, py + int(0.2 * fh)), tip, SKIN, max(3, int(0.1 * fw)))
    hand = cv2.GaussianBlur(hand, (0, 0), 1.5)
    half = image.copy()
    corner = (int(fx1 - 0.1 * fw), int(fy1 - 0.1 * fh))
    cv2.rectangle(half, corner, (int(cx), int(fy2 + 0.1 * fh)), (60, 45, 35), -1)
    for kind, occluded in (("eyebar", bar), ("mouth", mouth), ("hand", hand), ("half", half)):
        yield Sample(f"occ_{kind}_{identity}", "occlusion", occluded, [box], ignore)

    for face_h in (20, 30, 40, 60):
        scale = face_h / (crop_box[3] - crop_box[1])
        tw, th = max(2, round(crop.shape[1] * scale)), max(2, round(crop.shape[0] * scale))
        tile = cv2.resize(crop, (tw, th), interpolation=cv2.INTER_AREA)
        scene = _texture(BACKGROUNDS[(index + face_h) % len(BACKGROUNDS)])
        ox, oy = int(rng.integers(50, W - tw - 50)), int(rng.integers(50, H - th - 50))
        scene[oy : oy + th, ox : ox + tw] = tile
        sx, sy = tw / crop.shape[1], th / crop.shape[0]
        placed = [
            (ox + g[0] * sx, oy + g[1] * sy, ox + g[2] * sx, oy + g[3] * sy)
            for g in [crop_box, *crop_ignore]
        ]
        yield Sample(f"small{face_h}_{identity}", f"small{face_h}", scene, placed[:1], placed[1:])

    for keep in (0.6, 0.4):
        edge = int(round(fx1 + keep * fw))  # this column of the face becomes the right border
        shift = W - edge
        canvas = np.empty_like(image)
        canvas[:] = image[:, :1].mean(axis=0, keepdims=True).astype(np.uint8)
        canvas[:, shift:] = image[:, : W - shift]
        cut = _clip((fx1 + shift, fy1, fx2 + shift, fy2))
        cut_ignore = [_clip((g[0] + shift, g[1], g[2] + shift, g[3])) for g in ignore]
        cut_ignore = [g for g in cut_ignore if g[2] > g[0]]
        name = f"side{int(keep * 100)}"
        yield Sample(f"{name}_{identity}", "profile_cut", canvas, [cut], cut_ignore)
        mirrored = np.ascontiguousarray(canvas[:, ::-1])
        flipped = [(W - g[2], g[1], W - g[0], g[3]) for g in [cut, *cut_ignore]]
        yield Sample(f"{name}m_{identity}", "profile_cut", mirrored, flipped[:1], flipped[1:])

    linear = image.astype(np.float32)
    dark = (255 * (linear / 255) ** 2.2 * 0.5 + rng.normal(0, 3, linear.shape)).clip(0, 255)
    yield Sample(f"dark_{identity}", "lowlight_blur", dark.astype(np.uint8), [box], ignore)
    very_dark = (linear * 0.12 + rng.normal(0, 4, linear.shape)).clip(0, 255)
    yield Sample(f"vdark_{identity}", "lowlight_blur", very_dark.astype(np.uint8), [box], ignore)
    blurred = cv2.GaussianBlur(image, (0, 0), 0.03 * fw)
    yield Sample(f"blur_{identity}", "lowlight_blur", blurred, [box], ignore)
    kernel = np.zeros((41, 41), np.float32)
    kernel[20, :] = 1 / 41
    kernel = cv2.warpAffine(kernel, cv2.getRotationMatrix2D((20, 20), 30, 1), (41, 41))
    moved = cv2.filter2D(image, -1, kernel / kernel.sum())
    yield Sample(f"motion_{identity}", "lowlight_blur", moved, [box], ignore)


def _composites(src: dict[str, np.ndarray], rng: np.random.Generator) -> Iterator[Sample]:
    """Twelve scenes of 2 to 4 faces (portraits or the Hanks crop) of 40 to 320 px."""
    pool = [*IDENTITIES, "hanks"]
    for n in range(12):
        scene = _texture(BACKGROUNDS[n % len(BACKGROUNDS)])
        count = 2 + n % 3
        chosen = rng.choice(len(pool), size=count, replace=False)
        heights = rng.choice([40, 60, 90, 140, 220, 320], size=count, replace=False)
        boxes: list[BoxF] = []
        ignore: list[BoxF] = []
        placed: list[tuple[int, int, int, int]] = []
        for j, face_h in zip(chosen, sorted(heights, reverse=True), strict=True):
            if pool[j] == "hanks":
                crop, crop_box, crop_ignore = src["hanks"], HANKS_FACE, []
            else:
                crop, crop_box, crop_ignore = _portrait(src, pool[j])
            s = face_h / (crop_box[3] - crop_box[1])
            tw, th = round(crop.shape[1] * s), round(crop.shape[0] * s)
            if tw >= W - 20 or th >= H - 20:
                continue
            interpolation = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
            tile = cv2.resize(crop, (tw, th), interpolation=interpolation)
            for _ in range(200):
                ox, oy = int(rng.integers(10, W - tw - 10)), int(rng.integers(10, H - th - 10))
                if all(ox + tw < a or ox > c or oy + th < b or oy > d for a, b, c, d in placed):
                    break
            else:
                continue
            placed.append((ox, oy, ox + tw, oy + th))
            scene[oy : oy + th, ox : ox + tw] = tile
            boxes.append(tuple(o + v * s for o, v in zip((ox, oy, ox, oy), crop_box, strict=True)))
            ignore += [
                tuple(o + v * s for o, v in zip((ox, oy, ox, oy), g, strict=True))
                for g in crop_ignore
            ]
        yield Sample(f"multi{n:02d}", "multi", scene, boxes, ignore)


def _group(src: dict[str, np.ndarray]) -> Iterator[Sample]:
    """The six-person group photo at full width and at 55 %."""
    photo = src["t1"]
    faces = [box for name, (_, box, _) in IDENTITIES.items() if name.startswith("t1_")]
    for scale, tag in ((W / photo.shape[1], "full"), (0.55, "half")):
        scene = _texture(BACKGROUNDS[7 % len(BACKGROUNDS)])
        tw, th = round(photo.shape[1] * scale), round(photo.shape[0] * scale)
        ox, oy = (W - tw) // 2, 300
        scene[oy : oy + th, ox : ox + tw] = cv2.resize(
            photo, (tw, th), interpolation=cv2.INTER_AREA
        )
        moved = [
            (ox + a * scale, oy + b * scale, ox + c * scale, oy + d * scale)
            for a, b, c, d in faces + T1_IGNORE
        ]
        yield Sample(f"group_t1_{tag}", "group_real", scene, moved[:-1], moved[-1:])


def _negatives(src: dict[str, np.ndarray]) -> Iterator[Sample]:
    """Pictures without a face, centred on grey."""
    pictures = {name: src[name] for name in src if name.startswith("mask_")}
    for name in ("coffee", "chelsea", "rocket", "hubble_deep_field", "brick", "grass", "gravel"):
        image = getattr(skimage.data, name)()
        pictures[name] = (
            cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image[..., :3]
        )
    for name, picture in pictures.items():
        s = min(W / picture.shape[1], H / picture.shape[0])
        tw, th = int(picture.shape[1] * s), int(picture.shape[0] * s)
        scene = np.full((H, W, 3), 128, np.uint8)
        top, left = (H - th) // 2, (W - tw) // 2
        scene[top : top + th, left : left + tw] = cv2.resize(
            picture, (tw, th), interpolation=cv2.INTER_CUBIC
        )
        yield Sample(f"neg_{name}", "negative", scene, [])


OBFUSCATED_MULTI = ("multi00", "multi03", "multi06")


def samples(wheel: str) -> Iterator[Sample]:
    """The whole test set, built in memory; obfuscated copies follow their source image."""
    src = _sources(wheel)
    rng = np.random.default_rng(1234)
    parts = [_variants(src, i, identity, rng) for i, identity in enumerate(IDENTITIES)]
    for sample in (
        s for part in [*parts, _composites(src, rng), _group(src), _negatives(src)] for s in part
    ):
        yield sample
        if sample.cls in ("base", "group_real") or sample.name in OBFUSCATED_MULTI:
            xywh = [(x1, y1, x2 - x1, y2 - y1) for x1, y1, x2, y2 in sample.boxes]
            mask = face_mask_from_boxes(sample.image.shape, xywh)
            for method in OBFUSCATED:
                hidden = obfuscate_faces(sample.image, mask, method=method)
                yield Sample(
                    f"obf{method}_{sample.name}",
                    f"obf_{method}",
                    hidden,
                    sample.boxes,
                    sample.ignore,
                )


def _overlaps(d: BoxF, g: BoxF) -> tuple[float, float, float]:
    """IoU of a detection ``d`` and a face ``g``, the share of ``g`` it covers, and of ``d``
    inside ``g``."""
    iw = max(0.0, min(d[2], g[2]) - max(d[0], g[0]))
    ih = max(0.0, min(d[3], g[3]) - max(d[1], g[1]))
    inter = iw * ih
    area_d = max(1e-6, (d[2] - d[0]) * (d[3] - d[1]))
    area_g = max(1e-6, (g[2] - g[0]) * (g[3] - g[1]))
    return inter / (area_d + area_g - inter), inter / area_g, inter / area_d


def score(detections: list[BoxF], sample: Sample) -> tuple[list[bool], int]:
    """Which faces were found, and how many detections were false (see the module's rule)."""
    found = [
        any(iou >= 0.3 or cover >= 0.5 for iou, cover, _ in (_overlaps(d, g) for d in detections))
        for g in sample.boxes
    ]
    false = 0
    for d in detections:
        hits = (_overlaps(d, g) for g in [*sample.boxes, *sample.ignore])
        false += not any(iou >= 0.3 or cover >= 0.5 or inside >= 0.5 for iou, cover, inside in hits)
    return found, false


@dataclass
class Tally:
    """One detector's counts over the test set."""

    found: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    faces: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    images: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    false: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    silent: int = 0
    seconds: list[float] = field(default_factory=list)

    def add(self, sample: Sample, detections: list[BoxF], seconds: float) -> None:
        found, false = score(detections, sample)
        self.found[sample.cls] += sum(found)
        self.faces[sample.cls] += len(found)
        self.images[sample.cls] += 1
        self.false[sample.cls] += false
        if sample.cls.startswith("obf_"):
            return
        self.silent += not all(found) and bool(detections)
        self.seconds.append(seconds)


def _ratio(found: int, total: int) -> str:
    return f"{found}/{total} ({found / total:.2f})" if total else "-"


def detectors() -> dict[str, Callable[[np.ndarray], list[BoxF]]]:
    """The project's two detectors, and MTCNN with the paper's last-stage threshold (0.7)."""

    def project(name: str) -> Callable[[np.ndarray], list[BoxF]]:
        def run(image: np.ndarray) -> list[BoxF]:
            return [(x, y, x + w, y + h) for x, y, w, h in detect_faces(image, detector=name)]

        return run

    paper = MTCNN((*MTCNN_THRESHOLDS[:2], 0.7))

    def mtcnn_paper(image: np.ndarray) -> list[BoxF]:
        height, width = image.shape[:2]
        corners, _ = paper(image, DEFAULT_MIN_SIZE["mtcnn"])
        return [
            (max(0.0, x1), max(0.0, y1), min(width, x2), min(height, y2))
            for x1, y1, x2, y2 in corners.tolist()
        ]

    return {"haar": project("haar"), "mtcnn": project("mtcnn"), "mtcnn, O-Net 0.7": mtcnn_paper}


def main() -> None:
    """Print the study's tables as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("wheel", help="the insightface-2.1-py3-none-any.whl file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    compared = detectors()
    tallies = {name: Tally() for name in compared}
    blank = np.zeros((64, 64, 3), np.uint8)
    for detect in compared.values():
        detect(blank)  # loads the weights or cascades outside the timing
    for sample in samples(args.wheel):
        for name, tally in tallies.items():
            start = time.process_time()
            boxes = compared[name](sample.image)
            tally.add(sample, boxes, time.process_time() - start)

    clear = [c for c in CLASSES if c != "negative"]
    first = tallies["haar"]
    print("# Face detectors: MTCNN vs Haar\n")
    print("Written by `experiments/face_detector_study/study.py` (see its docstring).\n")
    for title, groups in (
        ("Faces found", GROUPS),
        ("Faces found, per variant", {c: (c,) for c in clear}),
    ):
        print(f"## {title}\n")
        print("| faces | n | " + " | ".join(tallies) + " |")
        print("|:---|---:|" + "---:|" * len(tallies))
        for label, classes in groups.items():
            faces = sum(first.faces[c] for c in classes)
            found = (sum(t.found[c] for c in classes) for t in tallies.values())
            print(f"| {label} | {faces} | " + " | ".join(_ratio(f, faces) for f in found) + " |")
        total = sum(first.faces[c] for c in clear)
        found = (sum(t.found[c] for c in clear) for t in tallies.values())
        print(f"| **all** | {total} | " + " | ".join(_ratio(f, total) for f in found) + " |\n")

    images = sum(first.images[c] for c in CLASSES)
    print(f"## Errors and cost, over the {images} images\n")
    print("| | " + " | ".join(tallies) + " |")
    print("|:---|" + "---:|" * len(tallies))
    rows = {
        "false detections per image": lambda t: f"{sum(t.false[c] for c in CLASSES) / images:.3f}",
        f"false detections on the {first.images['negative']} negatives": lambda t: str(
            t.false["negative"]
        ),
        "silent failures (images)": lambda t: str(t.silent),
        **{
            f"faces still found after `{m}` ({first.faces[f'obf_{m}']})": (
                lambda t, m=m: str(t.found[f"obf_{m}"])
            )
            for m in OBFUSCATED
        },
        "CPU s per 1080 x 1440 image, one thread (mean)": lambda t: f"{np.mean(t.seconds):.2f}",
    }
    for label, cell in rows.items():
        print(f"| {label} | " + " | ".join(cell(t) for t in tallies.values()) + " |")


if __name__ == "__main__":
    main()
