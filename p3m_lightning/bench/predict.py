"""Whole-process figures of ``predict.py`` on 1080x1920 photos, against the published pipeline.

Each configuration runs a real command in a fresh process (imports, checkpoint loading, the
first call's one-off costs included), on a random-weights published-format checkpoint: the
weights do not change the work. The published pipeline is not installed; its sample-photo test
is emulated step by step (``p3m_lightning.bench.reference``) and measured in the same run, and
our figures are given as ratios to it. ``process s`` is the whole command; ``peak RSS`` is the
process's maximum resident memory (``wait4``'s ``ru_maxrss``). Each command runs ``REPEATS``
times, alternating with the others (this machine's speed drifts), and the best run counts.

Each figure is also given as a multiple of this machine's floor for the strategy: the
network's FLOPs (counted with ``FlopCounterMode`` on the path ``predict.py`` runs, so
HYBRID's count includes the 2 % its banded full-size pass recomputes in the bands' overlaps) at the
best fp32 GEMM rate measured in the same run (a ``GEMM_SIZE`` square matmul, alternating with
the commands), plus the start-up no Python matting tool avoids (a fresh ``python -c "import
torch"``, best of the same repeats).

The folder figure compares one ``predict.py`` over a folder of ``FOLDER_PHOTOS`` photos (model
loaded once, decoding and writing overlapped with the network) with ``predict.py`` called
once per photo; the per-photo rate is measured on ``SINGLE_PHOTOS`` of them, to keep the
benchmark to a few minutes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from p3m_lightning.data.synthetic import render_portrait
from p3m_lightning.methods.p3m_net.network import P3MNet
from p3m_lightning.methods.p3m_net.published import save_published

ROOT = Path(__file__).resolve().parents[2]
HEIGHT, WIDTH = 1080, 1920
REPEATS = 2
FOLDER_PHOTOS = 20
SINGLE_PHOTOS = 3
GOAL_RATIO = {"resize": 0.6, "hybrid": 0.5}
"""Whole-process seconds, ours over the published pipeline's, at fp32."""
GOAL_RSS_GB = 2.0
"""Peak RSS of HYBRID."""
GOAL_FOLDER_SPEEDUP = 1.5
"""Photos/s of one command over a folder, over calling the command once per photo."""
GEMM_SIZE = 2048
"""Side of the square fp32 matmul whose rate is the floor's (about 0.1 s on 2 cores)."""


_LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as f:
    f.write(f"{seconds} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""
"""Runs a command and writes its seconds, peak RSS and exit status to a file. A process
inherits its parent's resident size at fork (Linux keeps it in ``ru_maxrss`` across exec), so
the command is forked from this small launcher, not from a caller that may hold gigabytes."""


def run_python(
    args: list[str], workdir: Path, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """Run ``python ARGS`` in a fresh process; returns (seconds, its own peak RSS in GB).

    Args:
        args: the arguments after ``python``.
        workdir: where the command's output and the measurement are written.
        env: its environment; default this process's, ONNX graphs cached in ``workdir``.

    Raises:
        RuntimeError: the command failed (its output is in the message).
    """
    out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
    result = workdir / "measured.txt"
    # Exported ONNX graphs go to the benchmark's own folder, not the user's cache.
    env = env if env is not None else {**os.environ, "P3M_CACHE_DIR": str(workdir / "cache")}
    launcher = [sys.executable, "-S", "-c", _LAUNCHER, str(result), sys.executable, *args]
    with open(out_path, "w") as out, open(err_path, "w") as err:
        subprocess.run(launcher, stdout=out, stderr=err, cwd=ROOT, env=env, check=True)
    seconds, maxrss, status = result.read_text().split()
    if int(status) != 0:
        raise RuntimeError(
            f"python {' '.join(args)} failed:\n{out_path.read_text()}{err_path.read_text()}"
        )
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    rss_bytes = int(maxrss) * (1 if sys.platform == "darwin" else 1024)
    return float(seconds), rss_bytes / 1e9


def strategy_gflop(ckpt: Path, photo: Path, strategy: str) -> float:
    """GFLOP (a multiply-add counts 2) of the network passes ``predict.py`` runs on ``photo``
    with ``strategy``, counted on the same path (``Matter.predict``)."""
    from p3m_lightning.api import Matter

    matter = Matter(ckpt, strategy=strategy)
    counter = FlopCounterMode(display=False)
    with counter:
        matter.predict(photo)
    return counter.get_total_flops() / 1e9


def gemm_gflops(size: int = GEMM_SIZE) -> float:
    """This process's fp32 matmul rate in GFLOP/s: the best of 3 after a warm-up."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - start)
    return 2 * size**3 / min(seconds) / 1e9


def _ours(ckpt: Path, inputs: Path, out: Path, strategy: str, backend: str = "torch") -> list[str]:
    return [
        str(ROOT / "predict.py"),
        f"ckpt_path={ckpt}",
        f"input={inputs}",
        f"output={out}",
        f"strategy={strategy}",
        f"backend={backend}",
    ]


def _reference(ckpt: Path, photo: Path, out: Path, strategy: str) -> list[str]:
    return ["-m", "p3m_lightning.bench.reference", str(ckpt), str(photo), str(out), strategy]


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def run(repeats: int = REPEATS, folder_photos: int = FOLDER_PHOTOS) -> None:
    """Print whole-process seconds, ratios and peak RSS for RESIZE and HYBRID, and the folder
    speed-up, each against its goal."""
    if not (ROOT / "predict.py").is_file():
        print("predict.py not found next to the package (not a source checkout); skipped")
        return
    print(
        f"== predict.py vs reference pipeline (emulated), {HEIGHT}x{WIDTH} JPEG, fp32, fresh "
        f"process each, best of {repeats}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs =="
    )
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        torch.manual_seed(0)
        ckpt = workdir / "p3mnet.pth"
        save_published(P3MNet(), ckpt)
        photos = workdir / "photos"
        photos.mkdir()
        rng = np.random.default_rng(0)
        for i in range(max(folder_photos, SINGLE_PHOTOS)):
            photo = render_portrait(HEIGHT, WIDTH, rng).image
            Image.fromarray(photo).save(photos / f"photo{i:02d}.jpg", quality=95)
        first = photos / "photo00.jpg"
        out = workdir / "out"
        out.mkdir()

        # The first onnxruntime run exports the graphs to the cache; later runs load them.
        export_s, _ = run_python(_ours(ckpt, first, out, "hybrid", "onnxruntime"), workdir)
        run_python(_ours(ckpt, first, out, "resize", "onnxruntime"), workdir)
        gflop = {s: strategy_gflop(ckpt, first, s) for s in ("resize", "hybrid")}
        best: dict[tuple[str, str], tuple[float, float]] = {}
        gemm, startup_s = 0.0, float("inf")
        for _ in range(repeats):
            gemm = max(gemm, gemm_gflops())
            startup_s = min(startup_s, run_python(["-c", "import torch"], workdir)[0])
            for strategy in ("resize", "hybrid"):
                for who, args in (
                    ("reference", _reference(ckpt, first, out, strategy)),
                    ("ours", _ours(ckpt, first, out, strategy)),
                    ("onnxruntime", _ours(ckpt, first, out, strategy, "onnxruntime")),
                ):
                    seconds, rss = run_python(args, workdir)
                    old = best.get((who, strategy), (float("inf"), 0.0))
                    best[(who, strategy)] = (min(old[0], seconds), max(old[1], rss))
        print(
            f"floor = FLOPs / best fp32 GEMM ({gemm:.1f} GFLOP/s, {GEMM_SIZE}^2 matmul) + "
            f"start-up ('import torch' in a fresh process, {startup_s:.2f} s)"
        )
        floor = {s: startup_s + gflop[s] / gemm for s in gflop}
        for strategy in ("resize", "hybrid"):
            print(
                f"{strategy:>8}: {gflop[strategy]:.1f} GFLOP, floor {floor[strategy]:.2f} s "
                f"({gflop[strategy] / gemm:.2f} s network + {startup_s:.2f} s start-up)"
            )
        print(
            f"{'strategy':>8} {'pipeline':>22} {'process s':>10} {'peak RSS':>9} {'vs ref':>7} "
            f"{'x floor':>8}"
        )
        for strategy in ("resize", "hybrid"):
            ref_s, ref_rss = best[("reference", strategy)]
            our_s, our_rss = best[("ours", strategy)]
            ratio = our_s / ref_s
            low = floor[strategy]
            print(
                f"{strategy:>8} {'reference (emulated)':>22} {ref_s:>10.2f} {ref_rss:>6.2f} GB "
                f"{'':>7} {ref_s / low:>7.2f}x"
            )
            goal = f"goal <= {GOAL_RATIO[strategy]}x {_verdict(ratio <= GOAL_RATIO[strategy])}"
            if strategy == "hybrid":
                goal += f"; RSS <= {GOAL_RSS_GB} GB {_verdict(our_rss <= GOAL_RSS_GB)}"
            print(
                f"{strategy:>8} {'predict.py':>22} {our_s:>10.2f} {our_rss:>6.2f} GB "
                f"{ratio:>6.2f}x {our_s / low:>7.2f}x  {goal}"
            )
            ort_s, ort_rss = best[("onnxruntime", strategy)]
            print(
                f"{strategy:>8} {'backend=onnxruntime':>22} {ort_s:>10.2f} {ort_rss:>6.2f} GB "
                f"{ort_s / ref_s:>6.2f}x {ort_s / low:>7.2f}x"
            )
        print(f"(first backend=onnxruntime hybrid run, exporting to the cache: {export_s:.2f} s)")

        # One photo per command vs one command over the folder (default strategy: hybrid).
        folder = workdir / "folder"
        folder.mkdir()
        for i in range(folder_photos):
            shutil.copy(photos / f"photo{i:02d}.jpg", folder)
        single_s = 0.0
        for i in range(SINGLE_PHOTOS):
            seconds, _ = run_python(
                _ours(ckpt, photos / f"photo{i:02d}.jpg", out, "hybrid"), workdir
            )
            single_s += seconds
        single_rate = SINGLE_PHOTOS / single_s
        folder_s, folder_rss = run_python(_ours(ckpt, folder, out, "hybrid"), workdir)
        folder_rate = folder_photos / folder_s
        speedup = folder_rate / single_rate
        # The folder's floor: one start-up, then every photo's network at the GEMM rate.
        folder_floor = startup_s + folder_photos * gflop["hybrid"] / gemm
        print(
            f"folder, hybrid: once per photo {single_rate:.3f} photos/s (over {SINGLE_PHOTOS}), "
            f"one command over {folder_photos} photos {folder_rate:.3f} photos/s "
            f"(peak RSS {folder_rss:.2f} GB): {speedup:.2f}x, goal >= {GOAL_FOLDER_SPEEDUP}x "
            f"{_verdict(speedup >= GOAL_FOLDER_SPEEDUP)}; {folder_s / folder_floor:.2f}x its "
            f"floor ({folder_floor:.1f} s)"
        )


if __name__ == "__main__":
    run()
