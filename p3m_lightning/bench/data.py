"""Training data pipeline throughput against the cost of merely decoding the same files."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from p3m_lightning.data.p3m10k import P3MTrainDataset, Sample, read_mask, read_rgb, verify_split

HEIGHT, WIDTH = 1620, 1080
"""A typical P3M-10k portrait (docs/p3m-net.md §2: ~1080 px on the short side)."""
TRAIN_FOLDERS = ("blurred_image", "mask", "fg", "bg")


def _textured(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 smooth colour gradients plus blurred noise: photo-like PNG/JPEG sizes."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 3).astype(np.float32)
    base = np.stack([np.sin(x / 150 + y / 230 + p) for p in phase], axis=-1) * 60 + 128
    noise = cv2.GaussianBlur(rng.normal(0, 25, (height, width, 3)).astype(np.float32), (0, 0), 1.5)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_fake_train_split(root: Path, count: int = 8, seed: int = 0) -> None:
    """Write ``count`` full-size training samples (JPEG image, PNG mask, PNG F and B)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    for folder in TRAIN_FOLDERS:
        (root / "train" / folder).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cy, cx = rng.uniform(0.4, 0.6) * HEIGHT, rng.uniform(0.4, 0.6) * WIDTH
        radius = rng.uniform(0.25, 0.35) * WIDTH
        # A head over shoulders (signed distances) with a 12 px soft edge: all three trimap regions.
        head = np.hypot(y - cy, x - cx) - radius
        shoulders = np.maximum(cy + 0.8 * radius - y, np.abs(x - cx) - 1.6 * radius)
        distance = np.minimum(head, shoulders)
        alpha = np.clip(0.5 - distance / 12, 0, 1)
        fg, bg = _textured(rng, HEIGHT, WIDTH), _textured(rng, HEIGHT, WIDTH)
        image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
        maps = {
            "blurred_image": (np.rint(image).astype(np.uint8), ".jpg"),
            "mask": (np.rint(alpha * 255).astype(np.uint8), ".png"),
            "fg": (fg, ".png"),
            "bg": (bg, ".png"),
        }
        for folder, (array, suffix) in maps.items():
            path = root / "train" / folder / f"bench_{i:03d}{suffix}"
            data = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix == ".jpg" else []
            cv2.imwrite(str(path), data, params)


class _DecodeOnly(Dataset):
    """Decodes a training sample's four files the way `P3MTrainDataset` does, nothing else."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> torch.Tensor:
        cv2.setNumThreads(0)
        paths = self.samples[index].paths
        arrays = [read_rgb(paths["blurred_image"]), read_mask(paths["mask"])]
        arrays += [read_rgb(paths["fg"]), read_rgb(paths["bg"])]
        return torch.tensor(sum(a.shape[0] for a in arrays))


class _NotShipped(Dataset):
    """`P3MTrainDataset` samples computed in full but not sent back: isolates the transport."""

    def __init__(self, dataset: P3MTrainDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor(len(self.dataset[index]))


def _epoch_rate(dataset: Dataset, epoch: int, workers: int, batch_size: int) -> float:
    """Samples/s of one epoch through a fresh DataLoader (worker start-up included)."""
    for candidate in (dataset, getattr(dataset, "dataset", None)):
        if isinstance(candidate, P3MTrainDataset):
            candidate.set_epoch(epoch)
    start = time.perf_counter()
    for _ in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
        pass
    return len(dataset) / (time.perf_counter() - start)


def _cpu_ms_per_sample(dataset: Dataset, epochs: int) -> float:
    """Single-thread CPU time per sample in this process: insensitive to other processes' load."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(0)
    try:
        start = time.thread_time()
        for epoch in range(epochs):
            if isinstance(dataset, P3MTrainDataset):
                dataset.set_epoch(epoch)
            for index in range(len(dataset)):
                dataset[index]
        return 1000 * (time.thread_time() - start) / (epochs * len(dataset))
    finally:
        cv2.setNumThreads(threads)


def run(count: int = 8, repeats: int = 7, workers: int = 2, size: int = 512) -> None:
    """Print training samples/s of `P3MTrainDataset`, decoding samples/s, and their ratio.

    Decoding epochs and training epochs alternate and the medians are reported, so load from
    other processes on the machine affects both sides alike.
    """
    print(
        f"== Training data pipeline, {count} samples of {WIDTH}x{HEIGHT} -> {size}x{size}, "
        f"{workers} DataLoader workers, median of {repeats} epochs =="
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_fake_train_split(root, count)
        start = time.perf_counter()
        train = P3MTrainDataset(root, size=size, verify="full")
        verify_rate = count / (time.perf_counter() - start)
        decode = _DecodeOnly(verify_split(root / "train", TRAIN_FOLDERS, mode="quick"))
        batch_size = max(count // workers, 1)
        datasets = {"decode": decode, "train": train, "not shipped": _NotShipped(train)}
        rates: dict[str, list[float]] = {name: [] for name in datasets}
        for epoch in range(repeats + 1):  # epoch 0 warms the page cache and every code path
            for name, dataset in datasets.items():
                rate = _epoch_rate(dataset, epoch, workers, batch_size)
                if epoch:
                    rates[name].append(rate)
        decode_cpu, train_cpu = (_cpu_ms_per_sample(d, epochs=2) for d in (decode, train))
    decode_rate, train_rate, unshipped_rate = (statistics.median(r) for r in rates.values())
    print(f"      decode only: {decode_rate:6.2f} samples/s (image + mask + F + B)")
    print(f"   training crops: {train_rate:6.2f} samples/s (decode, transform, tensors, transport)")
    print(
        f"  ... not shipped: {unshipped_rate:6.2f} samples/s (the same, tensors dropped in workers)"
    )
    print(f"  verify='full' (Pillow, threads): {verify_rate:6.2f} samples/s at dataset creation")
    print(f"pipeline cost / decoding cost: {decode_rate / train_rate:.2f}x (goal: <= 1.5x)")
    print(
        f"  of which the batch transport (float32 maps through shared memory): "
        f"{1000 * (1 / train_rate - 1 / unshipped_rate):.1f} ms/sample of wall time"
    )
    print(
        f"  in-process CPU time: decode {decode_cpu:.1f} ms/sample, training sample "
        f"{train_cpu:.1f} ms/sample ({train_cpu / decode_cpu:.2f}x, no transport)"
    )


if __name__ == "__main__":
    run()
