"""GCA Matting's own test procedure: the benchmark path of the official code (``main.py
--phase=test``: ``tester.py`` ``Tester.test()`` on ``OriginScale`` + ``ToTensor``)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from p3m_lightning.inference import MAX_SIDE, TrimapGuided
from p3m_lightning.methods.gca.network import trimap_guided_gca

__all__ = ["GCAPad"]


class GCAPad(TrimapGuided):
    """GCA's official test procedure (``tester.py``, not ``demo.py``).

    Image and trimap are padded by reflection on the bottom and right to the next multiple of
    32 (``OriginScale``; nothing when both sides already are), the trimap is classed by GCA's
    thresholds (under 85 background, 170 or over foreground: ``GCANet``'s input and
    guidance), alpha is cropped back, set to 0 / 1 on those classes, and, last, quantised as
    the script's ``(alpha * 255).astype(np.uint8)`` PNG (``floor``).

    An image with a side over ``max_side`` is first run at a size capped to it (the script has
    no cap; the default 1600 leaves P3M-500-P untouched).

    Args:
        quantize: ``"floor"`` (the official PNG), ``"round"`` or ``None`` (the float alpha).
        max_side: cap on each side the network sees.
    """

    name = "gca"

    def __init__(self, quantize: str | None = "floor", max_side: int = MAX_SIDE) -> None:
        super().__init__("pad", quantize, max_side)

    def params(self) -> dict[str, Any]:
        return {"quantize": self.quantize}

    def guide(self, alpha: Tensor, trimap: Tensor) -> Tensor:
        """``alpha`` with GCA's known classes imposed (``trimap_guided_gca``)."""
        return trimap_guided_gca(alpha, trimap)
