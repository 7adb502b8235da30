"""``python -m p3m_lightning.bench gpu``: training and prediction speed on a GPU, in a few minutes.

Measures, on synthetic data (no dataset, no network access):

- training images/s and peak GPU memory of P3M-Net (ResNet-34-mp), SHM (the largest method) and
  MODNet (the smallest) at the published recipe (batch 8, 512 crops, Adam): fp32, bf16-mixed,
  bf16-mixed + channels-last, and that with ``torch.compile``;
- P3M-Net trained with DistributedDataParallel over NCCL on every GPU present (one process per
  GPU; one GPU proves the path), the effective batch kept at 8;
- P3M-Net prediction at 1080p (1088x1920, BatchNorm folded): latency and images/s in fp32 and
  bf16 autocast, in torch and in ONNX Runtime's CUDA provider when it is installed.

It imports plain torch modules and the networks only (no Hydra, Lightning or image libraries),
so it runs on a bare GPU image. A missing optional package (ONNX Runtime, onnx) is installed
from a local wheel folder with ``--wheels DIR`` or its part is skipped, saying what is missing.
Without CUDA it says so and runs every code path once at tiny sizes on the CPU (a dry run,
labelled as such). Writes the figures as JSON (``--out``) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from p3m_lightning.methods.modnet.loss import MODNetLoss
from p3m_lightning.methods.modnet.network import MODNet
from p3m_lightning.methods.p3m_net.loss import P3MLoss
from p3m_lightning.methods.p3m_net.network import P3MNet
from p3m_lightning.methods.shm.loss import SHMLoss
from p3m_lightning.methods.shm.network import SHMNet
from p3m_lightning.models.bn_folding import fuse_conv_bn

METHODS: dict[str, tuple[Callable[[], nn.Module], Callable[[], nn.Module], float]] = {
    "P3M-Net": (P3MNet, P3MLoss, 1.0e-5),
    "SHM": (SHMNet, SHMLoss, 1.0e-5),
    "MODNet": (MODNet, MODNetLoss, 1.0e-2),
}
"""Name -> (network, loss, learning rate of conf/model/<method>.yaml); every one trained with
Adam here, so that the optimiser's cost is the same kind across methods."""

MODES = ("fp32", "bf16-mixed", "bf16-mixed+channels-last", "bf16-mixed+channels-last+compile")
OPTIONAL = {"onnxruntime": "onnxruntime-gpu", "onnx": "onnx"}
"""Module -> the pip package that provides it (for ``--wheels``)."""


@dataclass
class Row:
    """One measured figure of the table.

    Attributes:
        part: ``training``, ``ddp`` or ``prediction``.
        name: method and setting.
        images_per_s: throughput.
        latency_ms: median time of one step (training) or one image (prediction).
        peak_mem_gib: ``torch.cuda.max_memory_allocated`` over the measurement (None on CPU).
    """

    part: str
    name: str
    images_per_s: float
    latency_ms: float
    peak_mem_gib: float | None


def synthetic_batch(batch_size: int, size: int, device: torch.device) -> dict[str, Tensor]:
    """A training batch of soft discs over smooth colours, in the datamodule's units.

    ``image``, ``fg``, ``bg``: ``(B, 3, S, S)`` roughly ImageNet-normalised; ``alpha``:
    ``(B, 1, S, S)`` in [0, 1] with a soft edge; ``trimap``: 0, 128 or 255 from the alpha.
    """
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    radius = 0.4 + 0.2 * torch.rand(batch_size, 1, 1, 1, generator=gen)
    alpha = ((radius - torch.sqrt(xx**2 + yy**2)) * 20 + 0.5).clamp(0, 1)
    trimap = torch.full_like(alpha, 128.0)
    trimap[alpha <= 0] = 0.0
    trimap[alpha >= 1] = 255.0
    fg = torch.randn(batch_size, 3, 1, 1, generator=gen) + 0.2 * torch.sin(xx * 7)
    bg = torch.randn(batch_size, 3, 1, 1, generator=gen) + 0.2 * torch.cos(yy * 5)
    image = alpha * fg + (1 - alpha) * bg
    batch = {"image": image, "fg": fg, "bg": bg, "alpha": alpha, "trimap": trimap}
    return {k: v.to(device) for k, v in batch.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _training_step(
    net: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, bf16: bool, cl: bool
) -> Callable[[dict[str, Tensor]], Tensor]:
    """The step ``MattingTask`` runs: forward (autocast for bf16-mixed), loss, backward, Adam."""
    fmt = torch.channels_last if cl else torch.contiguous_format
    device_type = next(net.parameters()).device.type

    def step(batch: dict[str, Tensor]) -> Tensor:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            out = net(batch["image"].contiguous(memory_format=fmt))
            loss = loss_fn(out, batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def time_steps(
    step: Callable[[], object], device: torch.device, warmup: int, steps: int
) -> list[float]:
    """Seconds of each of ``steps`` calls after ``warmup`` calls, synchronised."""
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def bench_training(args: argparse.Namespace, device: torch.device, notes: list[str]) -> list[Row]:
    """Training images/s and peak memory of each method in each mode."""
    rows = []
    batch = synthetic_batch(args.batch, args.size, device)
    for method, (make_net, make_loss, lr) in METHODS.items():
        for mode in MODES:
            if "compile" in mode and not args.compile:
                notes.append(f"{method} {mode}: skipped (torch.compile is off: --compile on)")
                continue
            torch.manual_seed(0)
            cl = "channels-last" in mode
            net = make_net().to(device).train()
            net = net.to(memory_format=torch.channels_last) if cl else net
            optimizer = torch.optim.Adam(net.parameters(), lr=lr)
            model = torch.compile(net) if "compile" in mode else net
            step = _training_step(model, make_loss().to(device), optimizer, "bf16" in mode, cl)
            _reset_peak(device)
            warmup = args.warmup + (2 if "compile" in mode else 0)
            times = time_steps(lambda step=step: step(batch), device, warmup, args.steps)
            seconds = statistics.median(times)
            rows.append(
                Row(
                    "training",
                    f"{method} {mode}",
                    args.batch / seconds,
                    seconds * 1000,
                    _peak_gib(device),
                )
            )
            print(f"  training {method} {mode}: {args.batch / seconds:.1f} images/s", flush=True)
            del net, model, optimizer, step
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp_worker(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    """One DDP process: P3M-Net bf16-mixed + channels-last, ``batch / world`` images each."""
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        net = P3MNet()
        # trainer=ddp synchronises BatchNorm; SyncBatchNorm has no CPU kernels (dry run).
        net = (nn.SyncBatchNorm.convert_sync_batchnorm(net) if cuda else net).to(device).train()
        net = net.to(memory_format=torch.channels_last)
        model = nn.parallel.DistributedDataParallel(net, device_ids=[rank] if cuda else None)
        optimizer = torch.optim.Adam(model.parameters(), lr=1.0e-5)
        step = _training_step(model, P3MLoss().to(device), optimizer, cuda, True)
        batch = synthetic_batch(args.batch // world, args.size, device)
        _reset_peak(device)
        times = time_steps(lambda: step(batch), device, args.warmup, args.steps)
        if rank == 0:
            record = {
                "backend": dist.get_backend(),
                "world_size": world,
                "seconds": statistics.median(times),
                "peak_mem_gib": _peak_gib(device),
            }
            Path(out).write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


def bench_ddp(args: argparse.Namespace, notes: list[str]) -> list[Row]:
    """P3M-Net under DDP on every GPU (NCCL), or one gloo process on the CPU dry run."""
    world = max(torch.cuda.device_count(), 1)
    if args.batch % world:
        notes.append(f"ddp: skipped (batch {args.batch} does not split over {world} GPUs)")
        return []
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "ddp.json")
        mp.spawn(_ddp_worker, args=(world, _free_port(), args, out), nprocs=world, join=True)
        record = json.loads(Path(out).read_text())
    seconds = record["seconds"]
    cuda = torch.cuda.is_available()
    name = (
        f"P3M-Net DDP {record['backend']} x{world}, {args.batch // world}/process, "
        + ("SyncBatchNorm, bf16-mixed" if cuda else "fp32")
        + "+channels-last"
    )
    print(f"  {name}: {args.batch / seconds:.1f} images/s", flush=True)
    return [Row("ddp", name, args.batch / seconds, seconds * 1000, record["peak_mem_gib"])]


def require(module: str, wheels: Path | None, notes: list[str], part: str) -> Any | None:
    """Import ``module``; if absent, install it from ``wheels`` (no index) or note the skip."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pass
    package = OPTIONAL.get(module, module)
    if wheels is None:
        notes.append(
            f"{part}: skipped ({module} is not installed: pip install {package}, or pass "
            f"--wheels DIR with its wheel)"
        )
        return None
    command = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels)]
    done = subprocess.run([*command, package], capture_output=True, text=True, check=False)
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module)
    except ImportError:
        notes.append(
            f"{part}: skipped ({module} is not installed and {package} did not install from "
            f"{wheels}: {done.stderr.strip().splitlines()[-1:] or done.returncode})"
        )
        return None


def _time_prediction(
    fn: Callable[[], object], device: torch.device, args: argparse.Namespace
) -> tuple[float, float | None]:
    _reset_peak(device)
    seconds = statistics.median(time_steps(fn, device, args.warmup, args.steps))
    return seconds, _peak_gib(device)


def bench_prediction(args: argparse.Namespace, device: torch.device, notes: list[str]) -> list[Row]:
    """P3M-Net at ``--predict-size`` (BatchNorm folded, channels-last): torch fp32 and bf16,
    and ONNX Runtime (its CUDA provider; the CPU provider on the dry run)."""
    height, width = args.predict_size
    torch.manual_seed(0)
    net = fuse_conv_bn(P3MNet().eval()).to(device).to(memory_format=torch.channels_last)
    image = torch.randn(1, 3, height, width, device=device).contiguous(
        memory_format=torch.channels_last
    )
    rows = []
    for precision in ("fp32", "bf16"):

        def predict(precision: str = precision) -> None:
            with (
                torch.inference_mode(),
                torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"),
            ):
                net(image, outputs=("fusion",))

        seconds, peak = _time_prediction(predict, device, args)
        name = f"P3M-Net torch {precision} {height}x{width}"
        rows.append(Row("prediction", name, 1 / seconds, seconds * 1000, peak))
        print(f"  prediction {name}: {seconds * 1000:.1f} ms", flush=True)
    ort = require("onnxruntime", args.wheels, notes, "prediction onnxruntime")
    onnx = require("onnx", args.wheels, notes, "prediction onnxruntime") if ort else None
    if ort is None or onnx is None:
        return rows
    provider = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        notes.append(
            f"prediction onnxruntime: skipped (this onnxruntime has no {provider}; "
            f"it has {', '.join(ort.get_available_providers())}: install onnxruntime-gpu)"
        )
        return rows
    from p3m_lightning.export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(
            net.cpu().to(memory_format=torch.contiguous_format),
            Path(tmp) / "p3m.onnx",
            outputs=("fusion",),
        )
        session = ort.InferenceSession(str(path), providers=[provider])
    array = image.float().contiguous().cpu().numpy()
    seconds, _ = _time_prediction(lambda: session.run(None, {"image": array}), device, args)
    name = f"P3M-Net onnxruntime {provider.removesuffix('ExecutionProvider')} fp32 {height}x{width}"
    # ORT allocates outside PyTorch's allocator: max_memory_allocated would not see it.
    rows.append(Row("prediction", name, 1 / seconds, seconds * 1000, None))
    print(f"  prediction {name}: {seconds * 1000:.1f} ms", flush=True)
    return rows


def markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| part | setting | images/s | ms per step or image | peak GPU memory (GiB) |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        peak = "n/a" if r.peak_mem_gib is None else f"{r.peak_mem_gib:.2f}"
        lines.append(
            f"| {r.part} | {r.name} | {r.images_per_s:.2f} | {r.latency_ms:.1f} | {peak} |"
        )
    return "\n".join(lines)


def _size_pair(text: str) -> tuple[int, int]:
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; sizes default to the published recipe, and to tiny ones without CUDA."""
    parser = argparse.ArgumentParser(
        prog="python -m p3m_lightning.bench gpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--batch", type=int, help="training batch (default 8; 2 without CUDA)")
    parser.add_argument("--size", type=int, help="training crop (default 512; 64 without CUDA)")
    parser.add_argument("--steps", type=int, help="timed steps (default 10; 1 without CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default 3; 1)")
    parser.add_argument(
        "--predict-size",
        type=_size_pair,
        help="prediction HxW, multiples of 32 (default 1088x1920; 64x64)",
    )
    parser.add_argument(
        "--compile",
        choices=("on", "off"),
        help="torch.compile rows (default on with CUDA, off without)",
    )
    parser.add_argument("--wheels", type=Path, help="local wheel folder for missing packages")
    parser.add_argument("--out", type=Path, default=Path("bench_gpu.json"), help="JSON figures")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    defaults = {
        "batch": 8,
        "size": 512,
        "steps": 10,
        "warmup": 3,
        "predict_size": (1088, 1920),
        "compile": "on",
    }
    dry = {
        "batch": 2,
        "size": 64,
        "steps": 1,
        "warmup": 1,
        "predict_size": (64, 64),
        "compile": "off",
    }
    for key, value in (defaults if cuda else dry).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.compile = args.compile == "on"
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every part, write the JSON, print the table; returns the exit status."""
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda") if cuda else torch.device("cpu")
    if cuda:
        # Fixed input sizes: let cuDNN pick its fastest convolution once per shape.
        torch.backends.cudnn.benchmark = True
        print(f"== GPU benchmark on {torch.cuda.get_device_name(device)} ==")
    else:
        print("CUDA is absent: CPU dry run of every code path at tiny sizes (no GPU figures)")
    notes: list[str] = []
    rows = bench_training(args, device, notes)
    rows += bench_ddp(args, notes)
    rows += bench_prediction(args, device, notes)
    report = {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu (dry run, CUDA is absent)",
        "gpu_count": torch.cuda.device_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "dry_run": not cuda,
        "settings": {
            "batch": args.batch,
            "size": args.size,
            "steps": args.steps,
            "warmup": args.warmup,
            "predict_size": list(args.predict_size),
            "compile": args.compile,
        },
        "rows": [asdict(r) for r in rows],
        "notes": notes,
    }
    args.out.write_text(json.dumps(report, indent=2))
    print()
    print(markdown(rows))
    for note in notes:
        print(f"- {note}")
    print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
