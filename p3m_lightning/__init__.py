"""p3m-lightning: privacy-preserving portrait matting (P3M-Net, P3M-10k, the PPT benchmark)."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Matter", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so that light command-line tools (audit, synthetic, ...) do not import torch first.
    if name == "Matter":
        from p3m_lightning.api import Matter

        return Matter
    raise AttributeError(f"module 'p3m_lightning' has no attribute {name!r}")
