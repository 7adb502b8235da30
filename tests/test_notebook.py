"""``notebooks/demo.ipynb``: stored without outputs, and runs top to bottom in this venv."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "demo.ipynb"


def test_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.slow
def test_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    # The random-weights path of the notebook; the kernel inherits this environment.
    monkeypatch.delenv("CKPT_PATH", raising=False)
    # Matplotlib's default in a kernel: the inline backend (Agg rendering, PNG outputs).
    monkeypatch.delenv("MPLBACKEND", raising=False)
    # The notebook's temporary folder (checkpoint, data set, figure) lands under tmp_path.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # The kernelspec says "python"; jupyter_client launches it as this interpreter
    # (sys.executable), i.e. the venv's. Checked, not assumed:
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    def text(cell) -> str:
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")

    assert text(nb.cells[-1]).strip() == sys.executable
    printed = "".join(text(cell) for cell in nb.cells if cell.cell_type == "code")
    assert "RANDOM weights" in printed
    assert printed.count("MAD vs true alpha") == 3
    assert not any(
        o.output_type == "error"
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.outputs
    )
    assert "figure saved" in printed
    assert len(list(tmp_path.glob("p3m_demo_*/demo.png"))) == 1
    assert any(
        "image/png" in o.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.outputs
    )
