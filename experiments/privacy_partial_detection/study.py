"""What each ``privacy.on_partial`` rule costs and what it leaves clear.

When an image has no face mask and the detector finds a face, ``on_partial`` decides what is
obfuscated besides the detected faces: ``faces`` (nothing: the detector is trusted to find
every face), ``head`` (the top half of the person's silhouette) or ``person`` (the whole
person). This study measures, for each rule:

- the obfuscated share of the image on single portraits: the synthetic P3M-10k portraits, and
  two real photographs shipped with scikit-image and matplotlib (NASA's astronaut, the US
  Navy's Grace Hopper), with hand-drawn silhouettes as mattes;
- on two-person composites where the detector finds one face and misses the other (turned 90
  degrees, eyes occluded, small and lower in the frame), how many faces stay clear: a face is
  clear when less than 90 % of its ground-truth region is obfuscated.

The study was run with the Haar detector, before MTCNN became the default; it keeps Haar
(`DETECTOR`) so that its numbers can be reproduced. It needs composites where the detector
misses one face, and Haar misses more.

Run from the repository root (a few minutes on one CPU core)::

    python experiments/privacy_partial_detection/study.py > \
        experiments/privacy_partial_detection/results.md
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import matplotlib.cbook
import numpy as np
from skimage import data as skdata

from p3m_lightning.data.privacy import ON_PARTIAL, detect_faces, find_face_region
from p3m_lightning.data.synthetic import render_portrait

DETECTOR = "haar"
"""The face detector the study was run with."""

COVERED = 0.9
"""A face counts as obfuscated when at least this share of its ground truth is."""


@dataclass
class Scene:
    """An image, its matte and the ground truth of every face in it."""

    name: str
    image: np.ndarray
    alpha: np.ndarray
    faces: list[np.ndarray]  # one (H, W) bool mask per face


def _ellipse(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """The ellipse inscribed in ``box`` (x1, y1, x2, y2) as an (H, W) bool mask."""
    mask = np.zeros(shape, np.uint8)
    x1, y1, x2, y2 = box
    cv2.ellipse(mask, (((x1 + x2) / 2, (y1 + y2) / 2), (x2 - x1, y2 - y1), 0), 255, -1)
    return mask > 0


def _silhouette(shape: tuple[int, int], head: tuple, body: list[tuple[int, int]]) -> np.ndarray:
    """A hand-drawn matte: an ellipse (centre, half-axes) for the head, a polygon below."""
    alpha = np.zeros(shape, np.uint8)
    cv2.ellipse(alpha, head[0], head[1], 0, 0, 360, 255, -1)
    cv2.fillPoly(alpha, [np.array(body, np.int32)], 255)
    return alpha


def real_scenes() -> list[Scene]:
    """The astronaut and Grace Hopper, with silhouettes and face boxes drawn by hand."""
    astronaut = skdata.astronaut()
    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    grace = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    body_a = [(120, 150), (310, 150), (360, 300), (365, 511), (20, 511), (25, 330), (110, 230)]
    body_g = [(150, 300), (380, 300), (500, 420), (511, 599), (10, 599), (20, 430)]
    return [
        Scene(
            "astronaut",
            astronaut,
            _silhouette((512, 512), ((225, 100), (75, 90)), body_a),
            [_ellipse((512, 512), (181, 63, 267, 174))],
        ),
        Scene(
            "grace_hopper",
            grace,
            _silhouette((600, 512), ((262, 180), (112, 160)), body_g),
            [_ellipse((600, 512), (181, 120, 354, 340))],
        ),
    ]


def synthetic_scenes(count: int) -> list[Scene]:
    """Synthetic P3M-10k portraits (the generator's face mask is the ground truth)."""
    scenes = []
    for i in range(count):
        rng = np.random.default_rng([7, i])
        height, width = (int(v) for v in rng.integers(256, 401, size=2))
        p = render_portrait(height, width, rng)
        scenes.append(Scene(f"synthetic_{i}", p.image, p.alpha, [p.face_mask > 0]))
    return scenes


def _turn(scene: Scene) -> Scene:
    """The scene turned 90 degrees (a person lying down; the frontal cascade misses it)."""

    def rot(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.rot90(a))

    return Scene(
        scene.name + " turned", rot(scene.image), rot(scene.alpha), [rot(f) for f in scene.faces]
    )


def _occlude(scene: Scene) -> Scene:
    """A dark band over the upper half of each face (sunglasses, a hand, a cap's shadow)."""
    image = scene.image.copy()
    for face in scene.faces:
        ys, xs = np.nonzero(face)
        top, bottom = ys.min(), ys.max()
        band = slice(top + (bottom - top) // 4, top + (bottom - top) // 2)
        image[band, xs.min() : xs.max() + 1] = 30
    return Scene(scene.name + " occluded", image, scene.alpha, scene.faces)


def _scale(scene: Scene, factor: float) -> Scene:
    """The scene resized by ``factor``."""
    height, width = scene.alpha.shape
    size = (max(1, round(width * factor)), max(1, round(height * factor)))

    def resize(a: np.ndarray, interpolation: int) -> np.ndarray:
        return cv2.resize(a, size, interpolation=interpolation)

    return Scene(
        scene.name + f" x{factor:g}",
        resize(scene.image, cv2.INTER_AREA),
        resize(scene.alpha, cv2.INTER_AREA),
        [resize(f.astype(np.uint8), cv2.INTER_NEAREST) > 0 for f in scene.faces],
    )


def side_by_side(left: Scene, right: Scene) -> Scene:
    """Two people on one canvas, bottoms aligned (a smaller right one stands lower)."""
    height = max(left.alpha.shape[0], right.alpha.shape[0])
    width = left.alpha.shape[1] + right.alpha.shape[1]
    image = np.full((height, width, 3), 200, np.uint8)
    alpha = np.zeros((height, width), np.uint8)
    faces = []
    x = 0
    for part in (left, right):
        h, w = part.alpha.shape
        y = height - h
        person = part.alpha > 0
        image[y:, x : x + w][person] = part.image[person]
        alpha[y:, x : x + w] = part.alpha
        for face in part.faces:
            full = np.zeros((height, width), bool)
            full[y:, x : x + w] = face
            faces.append(full)
        x += w
    return Scene(f"{left.name} + {right.name}", image, alpha, faces)


def composites(real: list[Scene], synthetic: list[Scene]) -> Iterator[Scene]:
    """Two-person scenes: one face the detector should find, one it should miss."""
    astronaut, grace = real
    yield side_by_side(astronaut, _turn(grace))
    yield side_by_side(grace, _turn(astronaut))
    yield side_by_side(astronaut, _occlude(grace))
    yield side_by_side(grace, _scale(_occlude(astronaut), 0.5))
    yield side_by_side(astronaut, _scale(_turn(grace), 0.5))
    for i in range(0, len(synthetic) - 1, 2):
        yield side_by_side(synthetic[i], _turn(synthetic[i + 1]))
        yield side_by_side(synthetic[i], _scale(_occlude(synthetic[i + 1]), 0.6))


def _found(scene: Scene, boxes: list[tuple[int, int, int, int]]) -> list[bool]:
    """Which ground-truth faces hold the centre of a detected box."""
    height, width = scene.alpha.shape
    centres = [(min(y + h // 2, height - 1), min(x + w // 2, width - 1)) for x, y, w, h in boxes]
    return [any(face[cy, cx] for cy, cx in centres) for face in scene.faces]


def measure(scene: Scene, rule: str) -> tuple[float, float, int]:
    """(obfuscated share of the image, of the person, faces left clear) under ``rule``."""
    region = (
        find_face_region(scene.image, None, scene.alpha, on_partial=rule, detector=DETECTOR).mask
        > 0
    )
    person = scene.alpha > 0
    clear = sum(region[face].mean() < COVERED for face in scene.faces)
    return float(region.mean()), float(region[person].mean()), int(clear)


def main() -> None:
    """Print the study's tables as Markdown."""
    real = real_scenes()
    synthetic = synthetic_scenes(40)
    print("# on_partial: obfuscated area and faces left clear\n")
    print("Written by `python experiments/privacy_partial_detection/study.py`.\n")
    print("## Single portraits in which the detector finds the face\n")
    print("| set | images (detected / all) | rule | obfuscated share of image | of person |")
    print("|:---|---:|:---|---:|---:|")
    for label, scenes in (("synthetic P3M-10k portraits", synthetic), ("real photographs", real)):
        detected = [s for s in scenes if all(_found(s, detect_faces(s.image, detector=DETECTOR)))]
        for rule in ON_PARTIAL:
            shares = [measure(s, rule) for s in detected]
            image = np.mean([m[0] for m in shares])
            person = np.mean([m[1] for m in shares])
            counts = f"{len(detected)} / {len(scenes)}"
            print(f"| {label} | {counts} | `{rule}` | {image:.1%} | {person:.1%} |")
    print("\n## Two-person composites: the detector finds one face and misses the other\n")
    print("A face is clear when less than 90 % of its ground truth is obfuscated (the detector's")
    print("ellipse can cover a face it found only in part).\n")
    print("| composite | faces found | " + " | ".join(f"clear, `{r}`" for r in ON_PARTIAL) + " |")
    print("|:---|---:|" + "---:|" * len(ON_PARTIAL))
    totals = dict.fromkeys(ON_PARTIAL, 0)
    areas: dict[str, list[float]] = {r: [] for r in ON_PARTIAL}
    partial = 0
    for scene in composites(real, synthetic):
        found = _found(scene, detect_faces(scene.image, detector=DETECTOR))
        if not any(found) or all(found):
            continue
        partial += 1
        results = {rule: measure(scene, rule) for rule in ON_PARTIAL}
        for rule, (image, _, clear) in results.items():
            totals[rule] += clear
            areas[rule].append(image)
        cells = " | ".join(str(results[r][2]) for r in ON_PARTIAL)
        print(f"| {scene.name} | {sum(found)} / {len(found)} | {cells} |")
    print(
        f"| **all {partial} composites** | {partial} / {2 * partial} | "
        + " | ".join(f"**{totals[r]}** ({np.mean(areas[r]):.0%} of image)" for r in ON_PARTIAL)
        + " |"
    )


if __name__ == "__main__":
    main()
