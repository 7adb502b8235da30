"""``python -m p3m_lightning.bench``: every benchmark of the project, one after another."""

from __future__ import annotations

import importlib

SECTIONS = ("model", "methods", "metrics", "data", "predict")


def main() -> None:
    """Run each benchmark section's ``run()``; sections are separate modules of this package."""
    for name in SECTIONS:
        importlib.import_module(f"p3m_lightning.bench.{name}").run()
        print()


if __name__ == "__main__":
    main()
