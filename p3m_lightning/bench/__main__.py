"""``python -m p3m_lightning.bench``: every CPU benchmark of the project, one after another.

``python -m p3m_lightning.bench gpu [options]`` runs the GPU benchmark instead
(`p3m_lightning.bench.gpu`; ``--help`` lists its options).
"""

from __future__ import annotations

import importlib
import sys

SECTIONS = ("model", "methods", "metrics", "data", "predict", "training")


def main(argv: list[str] | None = None) -> int:
    """Run each benchmark section's ``run()`` (sections are separate modules of this package),
    or, with ``gpu`` first, the GPU benchmark with the remaining arguments."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["gpu"]:
        from p3m_lightning.bench.gpu import main as gpu_main

        return gpu_main(argv[1:])
    if argv:
        print(f"unknown arguments {argv}: run without arguments, or 'gpu [--help]'")
        return 2
    for name in SECTIONS:
        importlib.import_module(f"p3m_lightning.bench.{name}").run()
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
