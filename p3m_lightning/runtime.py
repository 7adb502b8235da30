"""ONNX Runtime as an inference backend of ``Matter`` and ``predict.py`` (``backend=onnxruntime``).

The loaded P3M-Net (BatchNorm folded) is exported once per checkpoint and per requested output
(``fusion`` for RESIZE; ``global_logits`` and ``local`` for HYBRID's two passes), with dynamic
height and width, into a cache folder keyed by the checkpoint's content hash: later runs load
the ``.onnx`` files without exporting again. The cache is ``$P3M_CACHE_DIR`` if set, else
``~/.cache/p3m_lightning``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch
from torch import nn

from p3m_lightning.methods.p3m_net.network import OUTPUTS

BACKENDS = ("torch", "onnxruntime")
CACHE_ENV = "P3M_CACHE_DIR"
_EXPORT_VERSION = "onnx-v1"
"""Part of the cache key: bump when the exported graph changes for the same checkpoint."""


def cache_root() -> Path:
    """Folder of exported models: ``$P3M_CACHE_DIR`` or ``~/.cache/p3m_lightning``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "p3m_lightning")


def file_digest(path: str | os.PathLike) -> str:
    """First 16 hex digits of the file's SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class OnnxRuntimeNet:
    """Called like ``P3MNet`` (``net(image, outputs=...)``), computed by ONNX Runtime on CPU.

    Args:
        model: the loaded P3M-Net (eval mode, BatchNorm folded or not) to export from.
        ckpt_path: the checkpoint ``model`` was loaded from; its content keys the cache.

    Raises:
        ImportError: ONNX Runtime is not installed (with the command that installs it).
    """

    inputs = ("image",)
    input_divisor = 32
    selects_outputs = True

    def __init__(self, model: nn.Module, ckpt_path: str | os.PathLike) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise ImportError(
                "backend=onnxruntime needs ONNX Runtime: pip install onnxruntime"
            ) from None
        self._ort = onnxruntime
        self.model = model
        self.folder = cache_root() / _EXPORT_VERSION / file_digest(ckpt_path)
        self._sessions: dict[tuple[str, ...], Any] = {}

    def onnx_path(self, outputs: tuple[str, ...]) -> Path:
        """The cached graph computing ``outputs``, exported now if not there yet."""
        path = self.folder / f"{'+'.join(outputs)}.onnx"
        if not path.is_file():
            from p3m_lightning.export import export_onnx

            export_onnx(self.model, path, outputs=outputs)  # written atomically
        return path

    def __call__(
        self, image: torch.Tensor, outputs: Collection[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """``image``: ``(B, 3, H, W)`` normalised float32 on the CPU -> the ``outputs`` maps
        (``alpha`` is ``fusion``, as ``P3MNet`` answers)."""
        asked = tuple(OUTPUTS[:3] if outputs is None else outputs)
        names = tuple(dict.fromkeys("fusion" if n == "alpha" else n for n in asked))
        session = self._sessions.get(names)
        if session is None:
            options = self._ort.SessionOptions()
            options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # Without these ORT keeps every pass's buffers for the largest size seen.
            options.enable_cpu_mem_arena = False
            options.enable_mem_pattern = False
            session = self._ort.InferenceSession(
                str(self.onnx_path(names)), options, providers=["CPUExecutionProvider"]
            )
            self._sessions[names] = session
        arrays = session.run(None, {"image": image.detach().float().contiguous().numpy()})
        maps = dict(zip(names, (torch.from_numpy(a) for a in arrays), strict=True))
        if "fusion" in maps:
            maps["alpha"] = maps["fusion"]
        return maps
