"""The LightningDataModule of P3M-10k under the PPT settings; it only wires the data parts."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from p3m_lightning.data.copy_paste import ImageCopyPaste
from p3m_lightning.data.p3m10k import (
    DatasetError,
    P3MEvalDataset,
    P3MTrainDataset,
    TrainFolders,
    verify_split,
)
from p3m_lightning.data.privacy import FaceObfuscator
from p3m_lightning.data.transforms import P3MTrainTransform

P3M10K_HELP = """\
P3M-10k is not at {root}.
Get it from https://github.com/JizhiziLi/P3M (the dataset section: sign the P3M-10k agreement,
then download), and unpack it into this tree:
  P3M-10k/
    train/blurred_image/*.jpg  train/mask/*.png  [train/facemask/*.png]
    validation/P3M-500-P/{{blurred_image,mask,trimap,facemask}}/
    validation/P3M-500-NP/{{original_image,mask,trimap}}/
Then point the run at it: `python train.py data.root=/path/to/P3M-10k ...` or
`export P3M10K_ROOT=/path/to/P3M-10k`. Without the dataset, `data=synthetic` trains on the
embedded synthetic P3M-10k."""

NO_NORMAL_TRAINING = """\
PPT setting N-training needs normal (non-obfuscated) training portraits, and the public P3M-10k
has none (only train/blurred_image). Two ways out:
  1. your own normal portraits with mattes: data.normal_train_dir=/path/to/root holding
     train/original_image/*.jpg and train/mask/*.png (same stems; F/B via prepare_fgbg, or
     data.fgbg=image);
  2. the embedded synthetic set, which has normal training images: data=synthetic."""


@dataclass(frozen=True)
class EvalSet:
    """A test set: a folder of images with mattes (and optional trimaps and face masks).

    Attributes:
        name: the name its metrics are logged under (``test/<name>/sad``).
        root: its folder; a relative path is taken under ``data.root``.
        image_dir, mask_dir, trimap_dir, facemask_dir: its sub-folder names; files match by
            stem. Without a trimap folder, trimaps are generated from the mattes (trimap-based
            models then need ``generated_trimaps``); without face masks, no face metrics.
        obfuscate: face-obfuscate its images on the fly (the run's privacy settings).
    """

    name: str
    root: str
    image_dir: str = "original_image"
    mask_dir: str = "mask"
    trimap_dir: str = "trimap"
    facemask_dir: str = "facemask"
    obfuscate: bool = False


EVAL_SETS: dict[str, EvalSet] = {
    s.name: s
    for s in (
        EvalSet("P3M-500-P", "validation/P3M-500-P", "blurred_image"),
        EvalSet("P3M-500-NP", "validation/P3M-500-NP", "original_image"),
        # The blurred twin of P3M-500-NP: the B/N gap measured on the very same images.
        EvalSet("P3M-500-NP-B", "validation/P3M-500-NP", "original_image", obfuscate=True),
    )
}
"""The built-in test sets of P3M-10k, by name."""


def eval_set(spec: str | Mapping[str, Any]) -> EvalSet:
    """A built-in test set by name, or one described in config (``EvalSet``'s fields).

    Raises:
        ValueError: an unknown name, or a description without ``name`` and ``root`` or with
            unknown fields.
    """
    if isinstance(spec, str):
        if spec not in EVAL_SETS:
            raise ValueError(
                f"unknown evaluation set {spec!r}; choose from {list(EVAL_SETS)} or describe "
                "one as {name: ..., root: ..., image_dir: ..., mask_dir: ...} "
                "(docs/adding-a-dataset.md)"
            )
        return EVAL_SETS[spec]
    fields = dict(spec)
    unknown = sorted(set(fields) - set(EvalSet.__dataclass_fields__))
    if unknown or "name" not in fields or "root" not in fields:
        raise ValueError(
            f"evaluation set {fields}: needs name and root; unknown fields {unknown}; "
            f"known: {list(EvalSet.__dataclass_fields__)}"
        )
    return EvalSet(**{k: (str(v) if k != "obfuscate" else bool(v)) for k, v in fields.items()})


HELDOUT = "train-heldout"
"""Name of the validation split held out from ``train/`` (``val_split``): the only set a best
checkpoint may be chosen on."""


class EpochSampler(DistributedSampler):
    """Shuffling sampler that also tells the dataset the epoch (it seeds the random crops).

    Being a ``DistributedSampler``, Lightning keeps it under DDP and calls ``set_epoch``.
    """

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle and draw new crops for ``epoch``."""
        super().set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


class UnpaddedDistributedSampler(DistributedSampler):
    """Evaluation sampler: each image exactly once over all processes (no padding, no drops).

    A process left without any image (a set smaller than the number of processes) gets the
    one index ``len(dataset)``, which `PaddingMarked` turns into a sample marked ``padding``
    that evaluation skips: Lightning refuses an empty dataloader on any process.
    """

    def _indices(self) -> range:
        own = range(self.rank, len(self.dataset), self.num_replicas)
        return own if len(own) else range(len(self.dataset), len(self.dataset) + 1)

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


class PaddingMarked(Dataset):
    """An evaluation set whose index ``len(dataset)`` is its first sample marked ``padding``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index == len(self.dataset):
            return {**self.dataset[0], "padding": True}
        return self.dataset[index]


class P3MDataModule(pl.LightningDataModule):
    """P3M-10k (or the synthetic twin) for one PPT setting.

    Args:
        root: the P3M-10k root folder.
        ppt_train: ``B`` trains on face-obfuscated images, ``N`` on normal ones.
        eval_sets: test sets, in the order of the test dataloaders: built-in names
            (``P3M-500-P`` (B), ``P3M-500-NP`` (N), ``P3M-500-NP-B`` (P3M-500-NP blurred on the
            fly)) or descriptions of other sets (``EvalSet`` fields: name, root, image_dir,
            mask_dir, trimap_dir, facemask_dir, obfuscate), e.g. AM-2k or a private set.
        synthetic: if given, the generator's arguments; the synthetic P3M-10k is written to
            ``root`` on first use (seeded, so every machine gets the same files).
        train_size: side of the training crops (``transform.size`` when a transform is given).
        batch_size: the recipe's training batch per optimiser step; ``train`` sets each
            process's loader batch from it (`p3m_lightning.train.batch_plan`). Evaluation
            always takes one whole image at a time.
        num_workers: DataLoader worker processes.
        fgbg: ``files`` (``train/fg``, ``train/bg``) or ``image`` (F = B = image; worse).
        verify: dataset verification before training, ``full``, ``quick`` or ``off``.
        normal_train_dir: a root with ``train/original_image/`` and ``train/mask/`` of the
            user's own normal portraits, for N-training (or B-training, obfuscated on the fly).
        obfuscation_method: ``blur``, ``mosaic`` or ``fill`` for on-the-fly obfuscation.
        on_no_face: on-the-fly obfuscation of an image without face mask in which the detector
            finds no face: ``person``, ``head``, ``skip`` or ``error``
            (`p3m_lightning.data.privacy.find_face_region`).
        use_detector: try the face detector before that fallback.
        face_detector: which detector, ``mtcnn`` or ``haar``
            (`p3m_lightning.data.face_detection.detect_faces`).
        on_partial: what is obfuscated besides the faces the detector finds: ``person``,
            ``head`` or ``faces`` (`p3m_lightning.data.privacy.ON_PARTIAL`).
        val_split: training images held out (seeded by ``seed``, disjoint from the training
            samples) as the validation set ``train-heldout``, evaluated whole like the test
            sets; 0 (the published recipe, which trains on every image) means no validation.
        batch_size_per_device: opt into another effective batch: each process loads this
            many (``train`` scales the learning rate linearly and records it).
        copy_paste: P3M-CP for the training images (the ``cp`` config group), None for none.
        copy_paste_level: ``image`` (P3M-ICP) or ``feature`` (P3M-FCP, with the task's
            ``feature_copy_paste``).
        max_eval_images: evaluate at most this many images per set (quick checks).
        generated_trimaps: accept trimaps generated from the mattes for a test set without a
            ``trimap/`` folder when a trimap-based model is evaluated (``trimap_sources``).
        eval_backgrounds: evaluation samples also carry ``bg``, the background estimated from
            image and matte: the plate of background-based models (BASIC).
        train_folders: the training set's folder names (``TrainFolders`` fields: split,
            blurred_image, original_image, mask, fg, bg, facemask); P3M-10k's by default.
        seed: seed of the training crops.
        transform: the training transform (`P3MTrainTransform`, with its crop, trimap-kernel,
            flip and transition-crop parameters and optional extra augmentations); default the
            published one at ``train_size``.
    """

    def __init__(
        self,
        root: str | None,
        ppt_train: Literal["B", "N"] = "B",
        eval_sets: Sequence[str | Mapping[str, Any]] = ("P3M-500-P", "P3M-500-NP"),
        synthetic: dict[str, Any] | None = None,
        train_size: int = 512,
        batch_size: int = 8,
        num_workers: int = 4,
        fgbg: Literal["files", "image"] = "files",
        verify: Literal["full", "quick", "off"] = "full",
        normal_train_dir: str | None = None,
        obfuscation_method: str = "blur",
        on_no_face: str = "person",
        use_detector: bool = True,
        on_partial: str = "person",
        face_detector: str = "mtcnn",
        max_eval_images: int | None = None,
        generated_trimaps: bool = False,
        eval_backgrounds: bool = False,
        train_folders: Mapping[str, str] | None = None,
        seed: int = 0,
        transform: P3MTrainTransform | None = None,
        val_split: int = 0,
        batch_size_per_device: int | None = None,
        copy_paste: ImageCopyPaste | None = None,
        copy_paste_level: Literal["image", "feature"] = "image",
    ) -> None:
        super().__init__()
        if ppt_train not in ("B", "N"):
            raise ValueError(f"ppt_train must be 'B' or 'N', got {ppt_train!r}")
        self.eval_sets = [eval_set(s) for s in eval_sets]
        self.root = Path(root) if root else None
        self.ppt_train = ppt_train
        self.eval_set_names = [s.name for s in self.eval_sets]
        self.synthetic = dict(synthetic) if synthetic else None
        self.train_size = train_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.fgbg = fgbg
        self.verify = verify
        self.normal_train_dir = Path(normal_train_dir) if normal_train_dir else None
        self.obfuscator = FaceObfuscator(
            obfuscation_method, on_no_face, use_detector, on_partial, face_detector
        )
        self.max_eval_images = max_eval_images
        self.generated_trimaps = generated_trimaps
        self.eval_backgrounds = eval_backgrounds
        self.train_folders = TrainFolders.from_config(train_folders)
        self.seed = seed
        self.transform = transform
        if val_split < 0:
            raise ValueError(f"val_split must be >= 0, got {val_split}")
        self.val_split = val_split
        self.batch_size_per_device = batch_size_per_device
        self.copy_paste = copy_paste
        self.copy_paste_level = copy_paste_level
        self.val_set_names = [HELDOUT] if val_split else []
        self.heldout_names: list[str] = []
        self.val_datasets: dict[str, Dataset] = {}
        self.train_dataset: Dataset | None = None
        self.eval_datasets: dict[str, Dataset] = {}

    def prepare_data(self) -> None:
        """Write the synthetic P3M-10k if needed; run the full verification (once per node).

        Decoding every file is slow on the full P3M-10k, so it happens here, in one process,
        and ``setup`` (run by every process) only checks names.
        """
        if self.synthetic is not None:
            from p3m_lightning.data.synthetic import generate

            if self.root is None:
                raise ValueError("data.root must name where the synthetic P3M-10k is written")
            generate(self.root, progress=True, **self.synthetic)
        if self.verify == "full":
            fitting = self.trainer is not None and self.trainer.state.fn == "fit"
            root = self._check_root(training=fitting)
            if fitting:
                self._train_dataset(root, "full")
            for spec in self.eval_sets:
                self._eval_dataset(root, spec, "full")

    def _check_root(self, training: bool = True) -> Path:
        """``data.root``, checked to be a P3M-10k root where the run needs one: training, or a
        test set given relative to it (test sets described with absolute roots need none)."""
        relative = any(not Path(s.root).expanduser().is_absolute() for s in self.eval_sets)
        if not training and not relative:
            return self.root or Path(".")
        if self.root is None or not (self.root / "validation").is_dir():
            raise DatasetError(P3M10K_HELP.format(root=self.root or "<data.root is not set>"))
        return self.root

    def _train_source(self, root: Path) -> tuple[Path, str, FaceObfuscator | None]:
        """The training root, image folder and on-the-fly obfuscation of the PPT setting."""
        names = self.train_folders
        obfuscate = None
        if self.normal_train_dir is not None:
            source, image_dir = self.normal_train_dir, names.original_image
            if not (source / names.split / image_dir).is_dir():
                raise DatasetError(
                    f"{source}: data.normal_train_dir must hold {names.split}/{image_dir}/*.jpg "
                    f"and {names.split}/{names.mask}/*.png (same stems), like a P3M-10k root"
                )
            # B-training on the user's normal portraits: obfuscated on the fly, never stored.
            if self.ppt_train == "B":
                obfuscate = self.obfuscator
        elif self.ppt_train == "B":
            source, image_dir = root, names.blurred_image
        else:
            if not (root / names.split / names.original_image).is_dir():
                raise DatasetError(NO_NORMAL_TRAINING)
            source, image_dir = root, names.original_image
        return source, image_dir, obfuscate

    def _train_dataset(self, root: Path, verify: str, exclude: Sequence[str] = ()) -> Dataset:
        source, image_dir, obfuscate = self._train_source(root)
        return P3MTrainDataset(
            source,
            image_dir,
            self.train_size,
            self.fgbg,
            transform=self.transform,
            seed=self.seed,
            verify=verify,
            obfuscate=obfuscate,
            exclude=exclude,
            copy_paste=self.copy_paste,
            copy_paste_level=self.copy_paste_level,
            folders=self.train_folders,
        )

    def _hold_out(self, root: Path) -> None:
        """Choose the held-out names (seeded) and build the ``train-heldout`` set."""
        source, image_dir, obfuscate = self._train_source(root)
        split = source / self.train_folders.split
        names = [s.name for s in verify_split(split, [image_dir], mode="off")]
        if self.val_split >= len(names):
            raise ValueError(
                f"data.val_split={self.val_split} would hold out every one of the {len(names)} "
                f"training images of {split}; choose fewer"
            )
        rng = np.random.default_rng([self.seed, len(names)])
        chosen = rng.choice(len(names), size=self.val_split, replace=False)
        self.heldout_names = sorted(names[i] for i in chosen)
        self.val_datasets = {
            HELDOUT: P3MEvalDataset(
                split,
                image_dir,
                verify="off",
                obfuscate=obfuscate,
                names=self.heldout_names,
                backgrounds=self.eval_backgrounds,
                mask_dir=self.train_folders.mask,
                facemask_dir=self.train_folders.facemask,
            )
        }

    def setup(self, stage: str) -> None:
        """Build (and verify) the datasets the stage needs."""
        root = self._check_root(training=stage in ("fit", "validate"))
        verify = "quick" if self.verify == "full" else self.verify
        if stage in ("fit", "validate") and self.val_split and not self.val_datasets:
            self._hold_out(root)
        if stage == "fit" and self.train_dataset is None:
            self.train_dataset = self._train_dataset(root, verify, self.heldout_names)
        if not self.eval_datasets:
            for spec in self.eval_sets:
                name = spec.name
                dataset = self._eval_dataset(root, spec, verify)
                if self.max_eval_images is not None:
                    count = min(self.max_eval_images, len(dataset))
                    dataset = torch.utils.data.Subset(dataset, range(count))
                self.eval_datasets[name] = dataset

    def trimap_sources(self, allow_generated: bool | None = None) -> dict[str, str]:
        """Where each test set's trimaps come from: ``files`` (its ``trimap/`` folder) or
        ``generated`` (from the matte, as for a set without one).

        Trimap-based models are scored with the trimaps of the test set: call this before
        evaluating one. ``allow_generated`` defaults to the ``generated_trimaps`` setting.

        Raises:
            DatasetError: a set has no ``trimap/`` folder and ``allow_generated`` is false.
        """
        sources = {}
        for name, dataset in self.eval_datasets.items():
            base = getattr(dataset, "dataset", dataset)  # a Subset of max_eval_images
            sources[name] = "files" if getattr(base, "has_trimap", True) else "generated"
        missing = [name for name, source in sources.items() if source == "generated"]
        allowed = self.generated_trimaps if allow_generated is None else allow_generated
        if missing and not allowed:
            raise DatasetError(
                f"evaluation set(s) {', '.join(missing)} under {self.root} have no trimap/ "
                "folder, and a trimap-based model is scored with the test set's trimaps. Add "
                "the folder, or accept trimaps generated from the mattes with "
                "data.generated_trimaps=true (recorded with the results)."
            )
        return sources

    def _eval_dataset(self, root: Path, spec: EvalSet, verify: str) -> Dataset:
        folder = Path(spec.root).expanduser()
        folder = folder if folder.is_absolute() else root / folder
        if not folder.is_dir():
            raise DatasetError(f"evaluation set {spec.name}: {folder} is not a folder")
        return P3MEvalDataset(
            folder,
            spec.image_dir,
            verify=verify,
            obfuscate=self.obfuscator if spec.obfuscate else None,
            backgrounds=self.eval_backgrounds,
            mask_dir=spec.mask_dir,
            trimap_dir=spec.trimap_dir,
            facemask_dir=spec.facemask_dir,
        )

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training crops; each epoch draws new crops (seeded)."""
        world, rank = self._world()
        sampler = EpochSampler(
            self.train_dataset,
            num_replicas=world,
            rank=rank,
            shuffle=True,
            seed=self.seed,
            drop_last=True,
        )
        # Lightning creates the first iterator (whose workers prefetch at once) before it sets
        # the epoch; on resume that would replay epoch 0's order and crops. Start at the
        # trainer's epoch instead.
        sampler.set_epoch(self.trainer.current_epoch if self.trainer is not None else 0)
        return DataLoader(
            self.train_dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            drop_last=len(self.train_dataset) >= self.batch_size * world,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def _eval_dataloaders(self, datasets: dict[str, Dataset]) -> list[DataLoader]:
        world, rank = self._world()
        return [
            DataLoader(
                PaddingMarked(dataset),
                batch_size=1,
                sampler=UnpaddedDistributedSampler(
                    dataset, num_replicas=world, rank=rank, shuffle=False
                ),
                num_workers=min(self.num_workers, 2),
            )
            for dataset in datasets.values()
        ]

    def val_dataloader(self) -> list[DataLoader]:
        """The held-out validation split (``val_set_names``), or none: never a test set."""
        return self._eval_dataloaders(self.val_datasets)

    def test_dataloader(self) -> list[DataLoader]:
        """One whole-image dataloader per test set, in ``eval_set_names`` order."""
        return self._eval_dataloaders(self.eval_datasets)
