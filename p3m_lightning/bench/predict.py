"""Whole-process figures of ``predict.py`` on one 1080x1920 photo: seconds and peak memory.

Each configuration runs the real command in a fresh process (imports, checkpoint loading, the
first call's one-off costs included), on a random-weights published-format checkpoint: the
weights do not change the work. ``predict s`` is the time ``predict.py`` reports for reading,
matting and writing the photo; ``process s`` is the whole command; ``peak RSS`` is the
process's maximum resident memory (``wait4``'s ``ru_maxrss``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from p3m_lightning.bench.model import cpu_has_bf16
from p3m_lightning.data.synthetic import render_portrait
from p3m_lightning.models import P3MNet, save_published

ROOT = Path(__file__).resolve().parents[2]
HEIGHT, WIDTH = 1080, 1920
GOAL_SECONDS = {"resize": 1.6, "hybrid": 6.0}
"""Per-photo goals at fp32."""
GOAL_RSS_GB = 2.0
_SUMMARY = re.compile(r"(\d+) done, (\d+) failed in ([\d.]+) s")


def _run_cli(args: list[str], workdir: Path) -> tuple[float, float, str]:
    """Run ``predict.py`` in a fresh process; returns (process seconds, peak RSS GB, stdout).

    Raises:
        RuntimeError: the command failed (its output is in the message).
    """
    out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "predict.py"), *args], stdout=out, stderr=err, cwd=ROOT
        )
        # wait4, unlike Popen.wait, returns the child's resource usage: its own peak RSS.
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"predict.py {' '.join(args)} failed:\n{stdout}{err_path.read_text()}")
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    rss_bytes = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return seconds, rss_bytes / 1e9, stdout


def run(precisions: tuple[str, ...] | None = None) -> None:
    """Print predict/process seconds and peak RSS for RESIZE and HYBRID at each precision.

    By default bf16 is measured only where the CPU computes it natively: emulated bf16 takes
    minutes per photo and says nothing about bf16 hardware.
    """
    if precisions is None:
        precisions = ("32", "bf16") if cpu_has_bf16() else ("32",)
        if len(precisions) == 1:
            print("bf16 skipped: this CPU has no native bf16 (see the model benchmark).")
    if not (ROOT / "predict.py").is_file():
        print("predict.py not found next to the package (not a source checkout); skipped")
        return
    print(
        f"== predict.py, one {HEIGHT}x{WIDTH} JPEG, fresh process each, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs =="
    )
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        torch.manual_seed(0)
        save_published(P3MNet(), workdir / "p3mnet.pth")
        photo = render_portrait(HEIGHT, WIDTH, np.random.default_rng(0)).image
        Image.fromarray(photo).save(workdir / "photo.jpg", quality=95)
        print(
            f"{'strategy':>8} {'precision':>9} {'predict s':>10} {'process s':>10} "
            f"{'peak RSS':>9}  goals (fp32)"
        )
        for precision in precisions:
            for strategy in ("resize", "hybrid"):
                process_s, rss_gb, stdout = _run_cli(
                    [
                        f"ckpt_path={workdir / 'p3mnet.pth'}",
                        f"input={workdir / 'photo.jpg'}",
                        f"output={workdir / 'out'}",
                        f"strategy={strategy}",
                        f"precision={precision}",
                    ],
                    workdir,
                )
                match = _SUMMARY.search(stdout)
                predict_s = float(match.group(3)) if match else float("nan")
                goals = ""
                if precision == "32":
                    goal_s = GOAL_SECONDS[strategy]
                    goals = (
                        f"<= {goal_s} s {'met' if predict_s <= goal_s else 'MISSED'}, "
                        f"<= {GOAL_RSS_GB} GB {'met' if rss_gb <= GOAL_RSS_GB else 'MISSED'}"
                    )
                print(
                    f"{strategy:>8} {precision:>9} {predict_s:>10.2f} {process_s:>10.2f} "
                    f"{rss_gb:>7.2f} GB  {goals}"
                )


if __name__ == "__main__":
    run()
