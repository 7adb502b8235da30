"""docs/adding-a-dataset.md, followed to the letter: its data config and its eval command."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from p3m_lightning.data.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "adding-a-dataset.md"


def test_the_walk_through_scores_a_set_of_another_layout(ckpt: Path, tmp_path: Path) -> None:
    text = DOC.read_text()
    block = re.search(r"```yaml\n(.*?)```", text, flags=re.S).group(1)
    assert block.splitlines()[0] == "# file: my_conf/data/ppm100.yaml"
    (tmp_path / "my_conf" / "data").mkdir(parents=True)
    (tmp_path / "my_conf" / "data" / "ppm100.yaml").write_text(block)
    command = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1).splitlines()[-1]
    assert command.startswith("python eval.py hydra.searchpath=[file://$PWD/my_conf] data=ppm100")

    # A PPM-100-like set: image/ and matte/, from the synthetic normal test set.
    synthetic = tmp_path / "synthetic"
    generate(synthetic, n_train=1, n_val=3, seed=0, min_side=64, max_side=96)
    ppm = tmp_path / "PPM-100"
    shutil.copytree(synthetic / "validation" / "P3M-500-NP" / "original_image", ppm / "image")
    shutil.copytree(synthetic / "validation" / "P3M-500-NP" / "mask", ppm / "matte")

    args = command.replace("$PWD", str(tmp_path)).split()[2:]
    args = [a if not a.startswith("ckpt_path=") else f"ckpt_path={ckpt}" for a in args]
    env = {**os.environ, "PPM100_ROOT": str(ppm), "PYTHONPATH": str(ROOT)}
    env.pop("P3M10K_ROOT", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), *args, f"hydra.run.dir={tmp_path / 'eval'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert list(summary["sets"]) == ["PPM-100"]
    assert summary["sets"]["PPM-100"]["n_images"] == 3
    assert summary["trimaps"] == {"PPM-100": "generated"}
    assert "PPM-100" in proc.stdout

    # A broken set is named with its file and reason.
    (ppm / "matte" / sorted(os.listdir(ppm / "matte"))[0]).unlink()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), *args, f"hydra.run.dir={tmp_path / 'eval2'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2 and "matte" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("AM-2k", "unknown evaluation set 'AM-2k'"),
        ({"name": "x"}, "needs name and root"),
        ({"name": "x", "root": "y", "images": "z"}, "unknown fields \\['images'\\]"),
    ],
)
def test_bad_test_set_descriptions_are_named(spec, message: str) -> None:
    from p3m_lightning.data.datamodule import eval_set

    with pytest.raises(ValueError, match=message):
        eval_set(spec)
