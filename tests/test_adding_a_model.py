"""docs/adding-a-model.md, followed to the letter: its files, its three commands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "adding-a-model.md"
# The doc's synthetic data, made smaller so that the walk-through takes seconds.
SMALL_DATA = [
    "data.synthetic.n_train=4",
    "data.synthetic.n_val=1",
    "data.synthetic.min_side=64",
    "data.synthetic.max_side=96",
    "data.train_size=64",
    "data.batch_size=2",
    "callbacks.progress_bar=null",
    "logger=none",
]


def doc_files(text: str) -> dict[str, str]:
    """The fenced blocks with a ``# file: <path>`` line among their first two: path -> content."""
    files = {}
    for block in re.findall(r"```(?:python|yaml)\n(.*?)```", text, flags=re.S):
        for line in block.splitlines()[:2]:
            if line.startswith("# file: "):
                files[line[len("# file: ") :].strip()] = block
    return files


def doc_commands(text: str) -> list[str]:
    block = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1)
    return [line for line in block.splitlines() if line.startswith("python ")]


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_the_walk_through_trains_evaluates_and_predicts(tmp_path: Path) -> None:
    text = DOC.read_text()
    files = doc_files(text)
    assert set(files) == {"my_models/tiny.py", "my_conf/model/tiny.yaml"}
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    (tmp_path / "my_models" / "__init__.py").write_text("")
    train_cmd, eval_cmd, predict_cmd = doc_commands(text)
    assert train_cmd.startswith("python train.py hydra.searchpath=[file://$PWD/my_conf]")
    assert "plugins=[my_models.tiny]" in eval_cmd and "plugins=[my_models.tiny]" in predict_cmd

    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
        "PROJECT_ROOT": str(tmp_path),
    }
    env.pop("P3M_IMAGENET_WEIGHTS", None)
    train_args = train_cmd.replace("$PWD", str(tmp_path)).split()[1:]
    out = tmp_path / "run"
    proc = run(
        [str(ROOT / "train.py"), *train_args[1:], *SMALL_DATA, f"hydra.run.dir={out}"],
        tmp_path,
        env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "tiny"
    # Tested before and after training, on both test sets; the training moved the model.
    for name in ("P3M-500-P", "P3M-500-NP"):
        before, after = (metrics[k][f"test/{name}/sad"] for k in ("before", "after"))
        assert np.isfinite(after) and after > 0 and after != before
    ckpt = out / "checkpoints" / "last.ckpt"

    eval_args = eval_cmd.replace("<date>", "x").split()[2:]
    eval_args = [a for a in eval_args if not a.startswith("ckpt_path=")]
    proc = run(
        [
            str(ROOT / "eval.py"),
            *eval_args,
            f"ckpt_path={ckpt}",
            "data.synthetic.n_train=4",
            "data.synthetic.n_val=1",
            "data.synthetic.min_side=64",
            "data.synthetic.max_side=96",
            f"hydra.run.dir={tmp_path / 'eval'}",
        ],
        tmp_path,
        env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["architecture"] == "tiny" and summary["strategy"] == "resize"
    assert summary["sets"]["P3M-500-P"]["sad"] == pytest.approx(
        metrics["after"]["test/P3M-500-P/sad"], rel=1e-4
    )

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)).save(photos / "a.png")
    predict_args = [a for a in predict_cmd.split()[2:] if a.startswith("plugins=")]
    proc = run(
        [
            str(ROOT / "predict.py"),
            *predict_args,
            f"ckpt_path={ckpt}",
            f"input={photos}",
            f"output={tmp_path / 'mattes'}",
        ],
        tmp_path,
        env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    alpha = np.asarray(Image.open(tmp_path / "mattes" / "a_alpha.png"))
    assert alpha.shape == (30, 41)

    # Without the plugin, the checkpoint's architecture is unknown: refused, named.
    proc = run(
        [str(ROOT / "predict.py"), f"ckpt_path={ckpt}", f"input={photos}", "output=x"],
        tmp_path,
        env,
    )
    assert proc.returncode == 2 and "unknown architecture 'tiny'" in proc.stderr
