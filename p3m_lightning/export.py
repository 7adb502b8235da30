"""Export a matting network to ONNX or TorchScript, with dynamic height and width.

Usage::

    python -m p3m_lightning.export ckpt_path=p3mnet_pretrained_on_p3m10k.pth format=onnx \\
        output=p3mnet.onnx
    python -m p3m_lightning.export ckpt_path=last.ckpt format=torchscript output=p3mnet.pt

The exported model maps an ImageNet-normalised ``(1, 3, H, W)`` float32 image, H and W any
multiples of 32, to three maps of the same H and W (``OUTPUTS``' first three of ``P3MNet``):

- ``fusion``: ``(1, 1, H, W)`` fused alpha in [0, 1];
- ``global_logits``: ``(1, 3, H, W)`` trimap logits (background, transition, foreground);
- ``local``: ``(1, 1, H, W)`` alpha of the matting decoder in [0, 1].

The multiple-of-32 check of ``P3MNet.forward`` is Python and is not exported: other sizes give
an error or wrong maps, so resize or pad first (as ``p3m_lightning.inference`` does). The
test strategies (resizing, the hybrid trimap) are not part of the exported graph either.

Any other registered method exports the same way, its inputs named after its ``inputs``
(``image``; ``image`` and ``trimap`` ``(1, 1, H, W)`` in [0, 255]; ``image`` and ``bg``) and
one output, ``alpha`` ``(1, 1, H, W)``; H and W multiples of its ``input_divisor``. A file that
does not name its architecture takes ``architecture=<method>``.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from p3m_lightning.atomic import atomic_path
from p3m_lightning.models.checkpoint import load_checkpoint
from p3m_lightning.models.contract import example_inputs
from p3m_lightning.models.registry import get_architecture
from p3m_lightning.models.safe_load import CheckpointError

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
OUTPUT_NAMES = ("fusion", "global_logits", "local")
MIN_OPSET = 15
"""``CastLike``, used by the ``max_unpool2d`` translation, needs ONNX opset 15."""

USAGE = (
    "usage: python -m p3m_lightning.export ckpt_path=<published .pth or Lightning .ckpt> "
    "[format=onnx|torchscript] [output=<file>] [opset=17] [architecture=<method>]"
)
DEFAULTS = {"ckpt_path": None, "format": "onnx", "output": None, "opset": 17, "architecture": None}

TRACE_SIZE = (64, 96)
"""Example input size for tracing; not square, so that a mixed-up height and width shows."""


class ExportWrapper(nn.Module):
    """P3M-Net returning a plain tuple of the ``outputs`` fields, for export.

    Args:
        net: a P3M-Net.
        outputs: P3M-Net output names (``OUTPUTS``), in the order they are returned; the exported
            graph computes only these (see ``P3MNet.forward``).
    """

    def __init__(self, net: nn.Module, outputs: Sequence[str] = OUTPUT_NAMES) -> None:
        super().__init__()
        self.net = net
        self.outputs = tuple(outputs)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``image``: ``(1, 3, H, W)`` normalised, H and W multiples of 32."""
        out = self.net(image, outputs=self.outputs)
        return tuple(out[name] for name in self.outputs)


class AlphaWrapper(nn.Module):
    """Any contract network returning only its ``alpha``, for export."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.net(*inputs)["alpha"]


def _example_inputs(model: nn.Module) -> tuple[torch.Tensor, ...]:
    """Example inputs in ``model.inputs`` order at ``TRACE_SIZE``, on the model's device."""
    return example_inputs(model, *TRACE_SIZE, next(model.parameters()).device)


def _is_p3m_net(model: nn.Module) -> bool:
    return bool(getattr(model, "selects_outputs", False))


@contextmanager
def _traceable_max_unpool() -> Iterator[None]:
    """Let ``F.max_unpool2d`` be traced.

    Recent torch validates the unpooled size with ``torch._check_value``, which rejects the
    tensor-valued sizes that tracing produces (pytorch/pytorch#189298). The check only guards
    against negative sizes, impossible for P3M-Net's 2x unpooling, so it is skipped while
    tracing and restored afterwards.
    """
    name = "_check_unpool_output_size"
    original: Callable | None = getattr(F, name, None)
    if original is None:  # older torch: nothing to work around
        yield
        return
    setattr(F, name, lambda output_size, dim: None)
    try:
        yield
    finally:
        setattr(F, name, original)


def _max_unpool2d_symbolic(
    g: Any, x: torch._C.Value, indices: torch._C.Value, output_size: torch._C.Value
) -> torch._C.Value:
    """ONNX for ``aten::max_unpool2d``, which the TorchScript-based exporter does not translate.

    torch's pool indices count within each ``(n, c)`` plane, while ONNX ``MaxUnpool`` wants
    indices into the whole flattened tensor; scattering each plane's values into a zero
    ``(N, C, Ho * Wo)`` tensor along the last axis uses torch's indices as they are. Where two
    values share an index (P3M-Net's overlapping 3x3 pools), ONNX Runtime, like torch on CPU,
    keeps the last one.

    Args:
        g: the exporter's graph context (its class moves between torch versions).
    """
    from torch.onnx import symbolic_helper

    def const(values: list[int]):
        return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))

    out_hw = g.op(
        "Concat",
        *[g.op("Unsqueeze", s, const([0])) for s in symbolic_helper._unpack_list(output_size)],
        axis_i=0,
    )
    batch_channels = g.op("Slice", g.op("Shape", x), const([0]), const([2]))
    flat = g.op("Concat", batch_channels, const([-1]), axis_i=0)
    zeros_shape = g.op("Concat", batch_channels, g.op("ReduceProd", out_hw, keepdims_i=1), axis_i=0)
    zeros = g.op(
        "CastLike", g.op("Expand", g.op("Constant", value_t=torch.tensor(0.0)), zeros_shape), x
    )
    scattered = g.op(
        "ScatterElements", zeros, g.op("Reshape", indices, flat), g.op("Reshape", x, flat), axis_i=2
    )
    return g.op("Reshape", scattered, g.op("Concat", batch_channels, out_hw, axis_i=0))


@contextmanager
def _onnx_max_unpool(opset: int) -> Iterator[None]:
    """Register the ``max_unpool2d`` translation for the duration of one export."""
    torch.onnx.register_custom_op_symbolic("aten::max_unpool2d", _max_unpool2d_symbolic, opset)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::max_unpool2d", opset)


@contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Silence the expected warnings of tracing-based export, and only those.

    Tracer warnings come from the Python multiple-of-32 check (see the module docstring); the
    deprecation notices concern the TorchScript-based exporter and ``torch.jit.trace``, chosen
    on purpose: the export needs neither ``onnxscript`` nor ``torch.export``'s dynamic-shape
    constraints, and the tests check the exported graphs at two sizes.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="The feature will be removed")
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated")
        yield


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    opset: int = 17,
    outputs: Sequence[str] = OUTPUT_NAMES,
) -> Path:
    """Write ``model`` as ONNX with dynamic height and width.

    Uses the TorchScript-based exporter (``dynamo=False``): it needs no ``onnxscript`` and
    handles the data-dependent unpooling sizes through tracing.

    Args:
        model: the P3M-Net (BatchNorm folded or not).
        path: the file to write.
        opset: ONNX opset, at least ``MIN_OPSET``.
        outputs: a P3M-Net's outputs by name (``OUTPUTS``); only what they need is
            exported. Other networks export ``alpha`` alone.

    Returns:
        The written path.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be at least {MIN_OPSET}, got {opset}")
    path = Path(path)
    if _is_p3m_net(model):
        wrapper: nn.Module = ExportWrapper(model, outputs).eval()
        input_names, outputs = ["image"], tuple(outputs)
    else:
        wrapper = AlphaWrapper(model).eval()
        input_names, outputs = list(getattr(model, "inputs", ("image",))), ("alpha",)
    spatial = {2: "height", 3: "width"}
    dynamic_axes = {name: spatial for name in (*input_names, *outputs)}
    with (
        _traceable_max_unpool(),
        _onnx_max_unpool(opset),
        atomic_path(path) as tmp,
        _quiet_tracing(),
    ):
        torch.onnx.export(
            wrapper,
            _example_inputs(model),
            str(tmp),
            dynamo=False,
            input_names=input_names,
            output_names=list(outputs),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
        )
    return path


def export_torchscript(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model`` as a traced TorchScript module; height and width dynamic.

    A P3M-Net returns ``(fusion, global_logits, local)``, any other network its ``alpha``.

    Returns:
        The written path.
    """
    path = Path(path)
    wrapper = (ExportWrapper(model) if _is_p3m_net(model) else AlphaWrapper(model)).eval()
    with (
        _traceable_max_unpool(),
        atomic_path(path) as tmp,
        _quiet_tracing(),
        torch.no_grad(),
    ):
        traced = torch.jit.trace(wrapper, _example_inputs(model), check_trace=False)
        traced.save(str(tmp))
    return path


def export(
    ckpt_path: str | os.PathLike,
    format: str = "onnx",
    output: str | os.PathLike | None = None,
    opset: int = 17,
    architecture: str | None = None,
) -> Path:
    """Load a checkpoint and export it.

    Args:
        ckpt_path: published ``.pth``, bare state dict or Lightning ``.ckpt``.
        format: ``onnx`` or ``torchscript``.
        output: file to write; default: the checkpoint's path with ``.onnx`` / ``.pt``.
        opset: ONNX opset (ONNX only).
        architecture: the registered method of a file that does not name it.

    Returns:
        The written path.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    output = Path(output) if output is not None else Path(ckpt_path).with_suffix(FORMATS[format])
    loaded = load_checkpoint(ckpt_path, architecture=architecture)
    reason = get_architecture(loaded.architecture).not_exportable
    if reason is not None:
        raise ValueError(
            f"{loaded.architecture} does not export with dynamic height and width: {reason}; "
            "use it through predict.py / Matter"
        )
    model = loaded.net
    if format == "onnx":
        return export_onnx(model, output, opset)
    return export_torchscript(model, output)


def main(argv: Sequence[str] | None = None) -> int:
    """``key=value`` command line -> exit status (0 written, 2 usage or checkpoint error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in argv):
        print(USAGE)
        return 0
    # Only the command line needs OmegaConf: export_onnx runs where it is not installed
    # (ONNX Runtime's backend, the GPU benchmark's bare image).
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = OmegaConf.create(DEFAULTS)
        OmegaConf.set_struct(cfg, True)  # an unknown key is a usage error
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(argv))
        if cfg.ckpt_path is None:
            raise ValueError("ckpt_path is required")
        path = export(cfg.ckpt_path, str(cfg.format), cfg.output, int(cfg.opset), cfg.architecture)
    except (OmegaConfBaseException, ValueError, FileNotFoundError, CheckpointError) as err:
        print(f"export: {err}\n{USAGE}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({cfg.format}; inputs (1, C, H, W), H and W multiples of its divisor)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
