"""P3M-10k datasets: training crops and whole-image evaluation samples (docs/p3m-net.md §2, §5).

Expected tree (one stem per sample across the folders of a split; images ``.jpg``, maps ``.png``,
either suffix accepted)::

    <root>/train/{blurred_image | original_image, mask, fg, bg, [facemask]}
    <root>/validation/P3M-500-P/{blurred_image, mask, trimap, facemask}
    <root>/validation/P3M-500-NP/{original_image, mask, trimap}

Every dataset checks its split when it is built (`verify_split`), so a missing or damaged file
stops the run before the first step with one error that lists the files and what to do, instead
of crashing a worker mid-epoch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info
from tqdm import tqdm

from p3m_lightning.data.copy_paste import ImageCopyPaste
from p3m_lightning.data.transforms import P3MTrainTransform, normalise_image, to_tensor_sample
from p3m_lightning.data.trimap import generate_trimap

VerifyMode = Literal["full", "quick", "off"]
VERIFY_MODES = ("full", "quick", "off")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_LISTED = 20
"""Problems listed one by one in a `DatasetError`; the rest are counted."""
PROGRESS_MIN = 100
"""Samples from which `verify_split` shows a progress bar while decoding."""

Obfuscate = Callable[
    [np.ndarray, np.ndarray | None, np.ndarray | None], tuple[np.ndarray, np.ndarray, str]
]
"""``(image (H, W, 3) uint8, face mask (H, W) or None, alpha (H, W) uint8) -> (obfuscated image,
(H, W) bool region that changed, how the region was found)``: a
`p3m_lightning.data.privacy.FaceObfuscator`."""

_REFETCH = (
    "re-download or re-extract these files from the P3M-10k release, or delete them together "
    "with the files of the same name in the split's other folders"
)
_UNMATCHED = (
    "every folder of a split must hold the same names: restore the missing files, or delete "
    "the unmatched ones"
)
_DUPLICATE = "keep one file per name in each folder and delete the others"


class DatasetError(RuntimeError):
    """A dataset split is missing, incomplete or holds unreadable files."""


@dataclass(frozen=True)
class _Problem:
    path: Path
    reason: str
    fix: str


@dataclass(frozen=True)
class Sample:
    """The files of one sample: its stem and one path per folder of the split."""

    name: str
    paths: Mapping[str, Path]


@dataclass(frozen=True)
class TrainFolders:
    """Folder names of a training set (P3M-10k's by default), files matched by stem.

    Attributes:
        split: the training split under the data root.
        blurred_image, original_image: the face-blurred and the normal images (which one a
            run reads depends on its PPT setting).
        mask, fg, bg, facemask: mattes, estimated foregrounds and backgrounds (``prepare_fgbg``),
            face masks.
    """

    split: str = "train"
    blurred_image: str = "blurred_image"
    original_image: str = "original_image"
    mask: str = "mask"
    fg: str = "fg"
    bg: str = "bg"
    facemask: str = "facemask"

    @classmethod
    def from_config(cls, values: Mapping[str, Any] | None) -> TrainFolders:
        """From a config mapping; unknown keys are an error naming the known ones."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"train_folders: unknown keys {unknown}; known: {list(cls.__dataclass_fields__)}"
            )
        return cls(**{k: str(v) for k, v in values.items()})


def _prepare_fgbg_fix(root: Path) -> str:
    return (
        f"write F and B with `python -m p3m_lightning.data.prepare_fgbg {root}` (it resumes, "
        "writing only what is missing: delete damaged fg/bg files first), or train with "
        "fgbg='image' (F = B = image, a weaker composition loss)"
    )


def _list_folder(folder: Path, fix: str) -> tuple[dict[str, Path], list[_Problem]]:
    """Image files of ``folder`` by stem, skipping hidden files (such as temporary files)."""
    found: dict[str, Path] = {}
    problems = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path = Path(entry.path)
        if entry.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if not entry.is_file():
            problems.append(_Problem(path, "not a regular file", fix))
        elif path.stem in found:
            problems.append(_Problem(path, f"same name as {found[path.stem].name}", _DUPLICATE))
        else:
            found[path.stem] = path
    return found, problems


def _decode(path: Path) -> tuple[tuple[int, int], str]:
    """Decode ``path`` completely; its (width, height) and Pillow mode. Raises if damaged."""
    with Image.open(path) as image:
        size, mode = image.size, image.mode
        # A JPEG decoded at 1/8 scale still entropy-decodes the whole stream (so truncation and
        # corruption are caught) at about half the cost.
        image.draft(mode, (max(size[0] // 8, 1), max(size[1] // 8, 1)))
        image.load()
    return size, mode


def _check_sample(sample: Sample, fixes: Mapping[str, str]) -> list[_Problem]:
    """Decode every file of a sample and compare each size with the first folder's (images)."""
    problems = []
    reference: tuple[str, tuple[int, int]] | None = None
    for index, (folder, path) in enumerate(sample.paths.items()):
        try:
            size, mode = _decode(path)
        # Pillow signals damage through several exception types (OSError for truncation,
        # UnidentifiedImageError, SyntaxError, ValueError, zlib errors): any failure to decode
        # is the same finding for the user.
        except Exception as exc:
            reason = f"cannot be decoded ({type(exc).__name__}: {exc})"
            problems.append(_Problem(path, reason, fixes.get(folder, _REFETCH)))
            continue
        # Mattes, trimaps and masks are read as 8-bit; 16-bit or float files would fail later.
        if index > 0 and (mode.startswith("I") or mode == "F"):
            reason = f"is a {mode} image; masks must be 8-bit"
            problems.append(_Problem(path, reason, fixes.get(folder, _REFETCH)))
        if reference is None:
            reference = (folder, size)
        elif size != reference[1]:
            reason = (
                f"size {size[0]}x{size[1]} differs from {reference[0]}/ "
                f"({reference[1][0]}x{reference[1][1]})"
            )
            problems.append(_Problem(path, reason, fixes.get(folder, _REFETCH)))
    return problems


def _raise_problems(split: Path, problems: Sequence[_Problem]) -> None:
    count = len(problems)
    lines = [f"P3M-10k split {split} failed verification: {count} problem(s)."]
    lines += [f"  {p.path}: {p.reason}" for p in problems[:MAX_LISTED]]
    if count > MAX_LISTED:
        lines.append(f"  ... and {count - MAX_LISTED} more")
    lines.append("What to do:")
    lines += [f"  - {fix}" for fix in dict.fromkeys(p.fix for p in problems)]
    raise DatasetError("\n".join(lines))


def verify_split(
    split: str | Path,
    folders: Sequence[str],
    *,
    mode: VerifyMode = "full",
    fixes: Mapping[str, str] | None = None,
    workers: int | None = None,
) -> list[Sample]:
    """Check a split folder and list its samples.

    ``folders[0]`` (the images) defines the samples; every other folder must hold a file of the
    same stem for each of them and nothing else. Modes:

    - ``"full"``: also decode every file with Pillow (truncated or corrupt files are caught,
      unlike with OpenCV, which decodes a truncated JPEG silently) and compare each file's size
      with its image's. Decoding runs in threads, with a progress bar on big splits.
    - ``"quick"``: folders, names and presence only.
    - ``"off"``: no per-file check; samples missing a file are left out silently.

    A missing folder is an error in every mode. Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` must
    stay False (its default) for truncated files to be found.

    Args:
        split: The split folder, e.g. ``<root>/train`` or ``<root>/validation/P3M-500-P``.
        folders: Folder names inside ``split``, the image folder first.
        mode: ``"full"``, ``"quick"`` or ``"off"``.
        fixes: What to tell the user for missing or damaged files of a folder, by folder name
            (default: re-download, or delete the sample).
        workers: Decoding threads for ``"full"`` (default: up to 8, one per CPU).

    Returns:
        The samples, sorted by name, with one path per folder in the order of ``folders``.

    Raises:
        DatasetError: Listing every problem found (the first `MAX_LISTED` by name), their count
            and what to do.
        ValueError: On an unknown mode or an empty ``folders``.
    """
    if mode not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {VERIFY_MODES}, got {mode!r}")
    if not folders:
        raise ValueError("folders must name at least the image folder")
    split, fixes = Path(split), dict(fixes or {})
    missing = [
        _Problem(split / f, "missing folder", fixes.get(f, _REFETCH))
        for f in folders
        if not (split / f).is_dir()
    ]
    if missing:
        _raise_problems(split, missing)

    problems: list[_Problem] = []
    listed = {}
    for folder in folders:
        listed[folder], duplicates = _list_folder(split / folder, fixes.get(folder, _REFETCH))
        problems += duplicates
    images = listed[folders[0]]
    if not images:
        problems.append(_Problem(split / folders[0], "holds no image", _REFETCH))
    for folder in folders[1:]:
        for stem in images.keys() - listed[folder].keys():
            reason = f"no matching file in {folder}/"
            problems.append(_Problem(images[stem], reason, fixes.get(folder, _UNMATCHED)))
        for stem in listed[folder].keys() - images.keys():
            problems.append(
                _Problem(listed[folder][stem], f"no matching {folders[0]}/", _UNMATCHED)
            )

    samples = [
        Sample(stem, {folder: listed[folder][stem] for folder in folders})
        for stem in sorted(images)
        if all(stem in listed[folder] for folder in folders[1:])
    ]
    if mode == "off":
        return samples
    if mode == "full":
        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:
            checked = pool.map(lambda s: _check_sample(s, fixes), samples)
            bar = tqdm(
                checked,
                total=len(samples),
                desc=f"verifying {split.name}",
                unit="sample",
                disable=len(samples) < PROGRESS_MIN,
            )
            for found in bar:
                problems += found
    if problems:
        _raise_problems(split, sorted(problems, key=lambda p: str(p.path)))
    return samples


def read_rgb(path: Path) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB.

    EXIF orientation is ignored, as Pillow (the reference's reader) ignores it: the masks carry
    none, so applying it to the image alone would misalign image and matte.

    Raises:
        DatasetError: If OpenCV cannot decode the file.
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise DatasetError(f"{path}: cannot be decoded; build the dataset with verify='full'")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_mask(path: Path) -> np.ndarray:
    """Read a matte, trimap or face mask as (H, W) uint8; a colour file gives its first channel.

    The first channel is red, as in the reference (``np.array(Image.open(p))[:, :, 0]``).

    Raises:
        DatasetError: If OpenCV cannot decode the file or it is not 8-bit.
    """
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.dtype != np.uint8:
        raise DatasetError(f"{path}: not a readable 8-bit image; build with verify='full'")
    # OpenCV orders colour channels BGR(A): red is index 2.
    return np.ascontiguousarray(mask[:, :, 2]) if mask.ndim == 3 else mask


_opencv_threads_limited = False


def _limit_opencv_threads() -> None:
    """Run OpenCV single-threaded inside DataLoader workers (they already run in parallel)."""
    global _opencv_threads_limited
    if not _opencv_threads_limited and get_worker_info() is not None:
        cv2.setNumThreads(0)
        _opencv_threads_limited = True


class P3MTrainDataset(Dataset):
    """P3M-10k training samples: random crops resized to ``size x size`` (docs/p3m-net.md §5).

    Each sample's randomness comes from ``numpy.random.default_rng([seed, index, epoch])``, so a
    sample depends only on those three numbers, whichever worker loads it. The epoch lives in
    shared memory: `set_epoch` before an epoch's iterator is created reaches the workers, also
    persistent ones.

    Args:
        root: The P3M-10k root (holding ``train/``).
        image_dir: ``"blurred_image"`` (B, the public training set) or ``"original_image"`` (N,
            a user-supplied normal set).
        size: Output side, when ``transform`` is None.
        fgbg: ``"files"`` reads F and B from ``train/fg`` and ``train/bg`` (write them once with
            `p3m_lightning.data.prepare_fgbg`); ``"image"`` uses F = B = image, which makes the
            composition loss a weaker, alpha-independent term (worse mattes).
        transform: Replaces ``P3MTrainTransform(size)``.
        seed: Base seed of every sample's generator.
        verify: ``"full"``, ``"quick"`` or ``"off"``; see `verify_split`.
        obfuscate: Applied to each image before the transform, with its ``train/facemask`` mask
            when that folder exists (else None) and its matte, for on-the-fly face obfuscation
            (`Obfuscate`); F and B take the obfuscated pixels inside the changed region.
        exclude: Names (stems) left out, e.g. a validation split held out from ``train/``.
        copy_paste: P3M-CP (`p3m_lightning.data.copy_paste.ImageCopyPaste`), which needs
            ``train/facemask``: at the ``image`` level the face is pasted into image, F and B;
            at the ``feature`` level the sample carries ``cp_source`` (the aligned source,
            normalised like the image) and ``cp_mask`` ((1, S, S) in {0, 1}, zero when no
            face was drawn) for the task's `FeatureCopyPaste`.
        copy_paste_level: ``image`` (P3M-ICP) or ``feature`` (P3M-FCP).
        folders: the training set's folder names (`TrainFolders`; P3M-10k's by default).

    Samples: ``image``, ``fg``, ``bg``: (3, S, S) float32 ImageNet-normalised; ``alpha``:
    (1, S, S) float32 in [0, 1]; ``trimap``: (1, S, S) float32 in [0, 255]; ``name``: stem;
    with ``obfuscate``, ``privacy``: how the face region was found (``mask``, ``detector``, a
    fallback, or ``skipped``: the training step drops such a sample).
    """

    def __init__(
        self,
        root: str | Path,
        image_dir: str = "blurred_image",
        size: int = 512,
        fgbg: Literal["files", "image"] = "files",
        transform: P3MTrainTransform | None = None,
        seed: int = 0,
        verify: VerifyMode = "full",
        obfuscate: Obfuscate | None = None,
        exclude: Collection[str] = (),
        copy_paste: ImageCopyPaste | None = None,
        copy_paste_level: Literal["image", "feature"] = "image",
        folders: TrainFolders | None = None,
    ) -> None:
        if fgbg not in ("files", "image"):
            raise ValueError(f"fgbg must be 'files' or 'image', got {fgbg!r}")
        if copy_paste_level not in ("image", "feature"):
            raise ValueError(f"copy_paste_level must be image or feature, got {copy_paste_level!r}")
        self.copy_paste = copy_paste
        self.copy_paste_level = copy_paste_level
        self.root = Path(root)
        self.image_dir = image_dir
        self.fgbg = fgbg
        self.transform = transform if transform is not None else P3MTrainTransform(size=size)
        self.seed = seed
        self.obfuscate = obfuscate
        self.folders = names = folders or TrainFolders()
        split = self.root / names.split
        wanted = [image_dir, names.mask]
        fixes = {}
        if fgbg == "files":
            wanted += [names.fg, names.bg]
            fixes = dict.fromkeys((names.fg, names.bg), _prepare_fgbg_fix(self.root))
        self.face_masks = (obfuscate or copy_paste) is not None and (
            split / names.facemask
        ).is_dir()
        if copy_paste is not None and not self.face_masks:
            raise DatasetError(
                f"{split / names.facemask}: P3M-CP pastes faces into the face masks of the "
                "training images; get train/facemask (the P3M-10k face-mask download) or leave "
                "cp=none"
            )
        if self.face_masks:
            wanted.append(names.facemask)
        excluded = set(exclude)
        self.samples = [
            s
            for s in verify_split(split, wanted, mode=verify, fixes=fixes)
            if s.name not in excluded
        ]
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        """The epoch mixed into every sample's seed."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Draw new crops: call before each epoch's DataLoader iterator is created."""
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        _limit_opencv_threads()
        sample = self.samples[index]
        names = self.folders
        image = read_rgb(sample.paths[self.image_dir])
        alpha = read_mask(sample.paths[names.mask])
        privacy = None
        face_mask = read_mask(sample.paths[names.facemask]) if self.face_masks else None
        if self.obfuscate is not None:
            image, region, privacy = self.obfuscate(image, face_mask, alpha)
        if self.fgbg == "files":
            fg, bg = read_rgb(sample.paths[names.fg]), read_rgb(sample.paths[names.bg])
            if privacy is not None:
                # F and B are the clear image's: inside the obfuscated region both become the
                # obfuscated image, so alpha F + (1 - alpha) B is still the training image and
                # the composition loss carries no clear face.
                fg[region] = image[region]
                bg[region] = image[region]
        else:
            fg = bg = image
        extra = None
        if self.copy_paste is not None:
            # Its own generator: the crops are the same with and without P3M-CP.
            pasted = self.copy_paste(
                image, fg, bg, face_mask, np.random.default_rng([self.seed, index, self.epoch, 1])
            )
            if self.copy_paste_level == "image":
                image, fg, bg = pasted.image, pasted.fg, pasted.bg
            else:
                where = face_mask > 0 if pasted.pasted else np.zeros(alpha.shape, bool)
                extra = {"cp_source": pasted.aligned, "cp_mask": where.astype(np.uint8) * 255}
        rng = np.random.default_rng([self.seed, index, self.epoch])
        out: dict[str, torch.Tensor | str] = dict(
            to_tensor_sample(self.transform(image, alpha, fg, bg, rng, extra=extra))
        )
        out["name"] = sample.name
        if privacy is not None:
            out["privacy"] = privacy
        return out


class P3MEvalDataset(Dataset):
    """Whole-image evaluation samples of one P3M-10k validation split, at full resolution.

    Args:
        root: The split folder, e.g. ``<root>/validation/P3M-500-P``.
        image_dir: ``"blurred_image"`` or ``"original_image"``.
        trimap_kernel: Elliptical kernel side of the trimap generated from the matte when the
            split has no ``trimap/`` folder (mid-range of the training kernels).
        verify: ``"full"``, ``"quick"`` or ``"off"``; see `verify_split`.
        obfuscate: Applied to each image with its ``facemask/`` mask when that folder exists (else
            None) and its matte, e.g. to build the face-blurred twin of a normal split on the
            fly (`Obfuscate`).
        names: Only these names (stems), e.g. a validation split held out from ``train/``.
        mask_dir, trimap_dir, facemask_dir: folder names of the mattes, the (optional)
            trimaps and the (optional) face masks, for test sets of other layouts (PPM-100's
            ``matte``, ...).
        backgrounds: Also give ``bg``, the background estimated from the (obfuscated) image and
            its matte (``prepare_fgbg.estimate_fgbg``), the plate of background-based models
            such as BASIC. Costs about a second per megapixel.

    Samples: ``image``: (3, H, W) float32 ImageNet-normalised; ``alpha``: (1, H, W) float32 in
    [0, 1]; ``trimap``: (1, H, W) uint8 0/128/255; ``face_mask``: (1, H, W) uint8 0/255, only when
    the split has ``facemask/``; ``name``: stem; with ``obfuscate``, ``privacy_mask`` (1, H, W)
    uint8 0/255 (where the image was obfuscated) and ``privacy`` (how that region was found).
    """

    def __init__(
        self,
        root: str | Path,
        image_dir: str = "blurred_image",
        trimap_kernel: int = 25,
        verify: VerifyMode = "full",
        obfuscate: Obfuscate | None = None,
        names: Collection[str] | None = None,
        backgrounds: bool = False,
        mask_dir: str = "mask",
        trimap_dir: str = "trimap",
        facemask_dir: str = "facemask",
    ) -> None:
        self.root = Path(root)
        self.image_dir = image_dir
        self.backgrounds = backgrounds
        self.mask_dir, self.trimap_dir, self.facemask_dir = mask_dir, trimap_dir, facemask_dir
        self.trimap_kernel = trimap_kernel
        self.obfuscate = obfuscate
        folders = [image_dir, mask_dir]
        optional = [f for f in (trimap_dir, facemask_dir) if (self.root / f).is_dir()]
        self.samples = verify_split(self.root, folders + optional, mode=verify)
        if names is not None:
            wanted = set(names)
            self.samples = [s for s in self.samples if s.name in wanted]
        self.has_trimap = trimap_dir in optional
        self.has_face_mask = facemask_dir in optional

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        _limit_opencv_threads()
        sample = self.samples[index]
        image = read_rgb(sample.paths[self.image_dir])
        alpha = read_mask(sample.paths[self.mask_dir])
        if self.has_trimap:
            trimap = read_mask(sample.paths[self.trimap_dir])
        else:
            trimap = generate_trimap(alpha, self.trimap_kernel)
        face_mask = None
        if self.has_face_mask:
            face_mask = np.where(read_mask(sample.paths[self.facemask_dir]) > 0, 255, 0)
            face_mask = face_mask.astype(np.uint8)
        region = privacy = None
        if self.obfuscate is not None:
            image, region, privacy = self.obfuscate(image, face_mask, alpha)
        out: dict[str, torch.Tensor | str] = {
            "image": torch.from_numpy(normalise_image(image)),
            "alpha": torch.from_numpy(alpha[None].astype(np.float32) / 255),
            "trimap": torch.from_numpy(np.ascontiguousarray(trimap[None])),
        }
        if self.backgrounds:
            from p3m_lightning.data.prepare_fgbg import estimate_fgbg

            out["bg"] = torch.from_numpy(normalise_image(estimate_fgbg(image, alpha)[1]))
        if face_mask is not None:
            out["face_mask"] = torch.from_numpy(face_mask[None])
        if region is not None:
            # Where the image was obfuscated on the fly, for panels and the privacy report.
            out["privacy_mask"] = torch.from_numpy(region[None].astype(np.uint8) * 255)
            out["privacy"] = privacy
        out["name"] = sample.name
        return out
