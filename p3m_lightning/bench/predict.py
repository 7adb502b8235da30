"""Whole-process figures of ``predict.py`` on 1080x1920 photos, against the published pipeline.

Each configuration runs a real command in a fresh process (imports, checkpoint loading, the
first call's one-off costs included), on a random-weights published-format checkpoint: the
weights do not change the work. The published pipeline is not installed; its sample-photo test
is emulated step by step (``p3m_lightning.bench.reference``) and measured in the same run, and
our figures are given as ratios to it. ``process s`` is the whole command; ``peak RSS`` is the
process's maximum resident memory (``wait4``'s ``ru_maxrss``). Each command runs ``REPEATS``
times, alternating with the others (this machine's speed drifts), and the best run counts.

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


def _run(args: list[str], workdir: Path) -> tuple[float, float]:
    """Run ``python ARGS`` in a fresh process; returns (seconds, peak RSS in GB).

    Raises:
        RuntimeError: the command failed (its output is in the message).
    """
    out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        start = time.perf_counter()
        # Exported ONNX graphs go to the benchmark's own folder, not the user's cache.
        env = {**os.environ, "P3M_CACHE_DIR": str(workdir / "cache")}
        proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=err, cwd=ROOT, env=env)
        # wait4, unlike Popen.wait, returns the child's resource usage: its own peak RSS.
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(
            f"python {' '.join(args)} failed:\n{out_path.read_text()}{err_path.read_text()}"
        )
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    rss_bytes = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return seconds, rss_bytes / 1e9


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
        export_s, _ = _run(_ours(ckpt, first, out, "hybrid", "onnxruntime"), workdir)
        _run(_ours(ckpt, first, out, "resize", "onnxruntime"), workdir)
        best: dict[tuple[str, str], tuple[float, float]] = {}
        for _ in range(repeats):
            for strategy in ("resize", "hybrid"):
                for who, args in (
                    ("reference", _reference(ckpt, first, out, strategy)),
                    ("ours", _ours(ckpt, first, out, strategy)),
                    ("onnxruntime", _ours(ckpt, first, out, strategy, "onnxruntime")),
                ):
                    seconds, rss = _run(args, workdir)
                    old = best.get((who, strategy), (float("inf"), 0.0))
                    best[(who, strategy)] = (min(old[0], seconds), max(old[1], rss))
        print(f"{'strategy':>8} {'pipeline':>22} {'process s':>10} {'peak RSS':>9} {'ratio':>6}")
        for strategy in ("resize", "hybrid"):
            ref_s, ref_rss = best[("reference", strategy)]
            our_s, our_rss = best[("ours", strategy)]
            ratio = our_s / ref_s
            print(f"{strategy:>8} {'reference (emulated)':>22} {ref_s:>10.2f} {ref_rss:>6.2f} GB")
            goal = f"goal <= {GOAL_RATIO[strategy]}x {_verdict(ratio <= GOAL_RATIO[strategy])}"
            if strategy == "hybrid":
                goal += f"; RSS <= {GOAL_RSS_GB} GB {_verdict(our_rss <= GOAL_RSS_GB)}"
            print(
                f"{strategy:>8} {'predict.py':>22} {our_s:>10.2f} {our_rss:>6.2f} GB "
                f"{ratio:>5.2f}x  {goal}"
            )
            ort_s, ort_rss = best[("onnxruntime", strategy)]
            print(
                f"{strategy:>8} {'backend=onnxruntime':>22} {ort_s:>10.2f} {ort_rss:>6.2f} GB "
                f"{ort_s / ref_s:>5.2f}x"
            )
        print(f"(first backend=onnxruntime hybrid run, exporting to the cache: {export_s:.2f} s)")

        # One photo per command vs one command over the folder (default strategy: hybrid).
        folder = workdir / "folder"
        folder.mkdir()
        for i in range(folder_photos):
            shutil.copy(photos / f"photo{i:02d}.jpg", folder)
        single_s = 0.0
        for i in range(SINGLE_PHOTOS):
            seconds, _ = _run(_ours(ckpt, photos / f"photo{i:02d}.jpg", out, "hybrid"), workdir)
            single_s += seconds
        single_rate = SINGLE_PHOTOS / single_s
        folder_s, folder_rss = _run(_ours(ckpt, folder, out, "hybrid"), workdir)
        folder_rate = folder_photos / folder_s
        speedup = folder_rate / single_rate
        print(
            f"folder, hybrid: once per photo {single_rate:.3f} photos/s (over {SINGLE_PHOTOS}), "
            f"one command over {folder_photos} photos {folder_rate:.3f} photos/s "
            f"(peak RSS {folder_rss:.2f} GB): {speedup:.2f}x, goal >= {GOAL_FOLDER_SPEEDUP}x "
            f"{_verdict(speedup >= GOAL_FOLDER_SPEEDUP)}"
        )


if __name__ == "__main__":
    run()
