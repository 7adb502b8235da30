"""ONNX and TorchScript export: dynamic sizes, outputs equal to PyTorch's."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from p3m_lightning.export import OUTPUT_NAMES, ExportWrapper, main
from p3m_lightning.models.checkpoint import load_model

SIZES = ((64, 96), (96, 64))
"""Two sizes; the first is the tracing example, the second swaps height and width."""


@pytest.fixture(scope="module")
def reference(ckpt: Path):
    """PyTorch's (fusion, global_logits, local) for a fixed input at each size."""
    model = ExportWrapper(load_model(ckpt)).eval()
    gen = torch.Generator().manual_seed(1)
    cases = []
    for height, width in SIZES:
        image = torch.randn(1, 3, height, width, generator=gen)
        with torch.inference_mode():
            cases.append((image, [t.numpy() for t in model(image)]))
    return cases


def _assert_close(outputs: list[np.ndarray], expected: list[np.ndarray]) -> None:
    fusion, logits, local = outputs
    ref_fusion, ref_logits, ref_local = expected
    assert fusion.shape == ref_fusion.shape and logits.shape == ref_logits.shape
    assert np.abs(local - ref_local).max() <= 1e-4
    assert np.abs(logits - ref_logits).max() <= 1e-3
    # The fused alpha follows the trimap argmax: compare it where that is not a near-tie.
    top2 = np.sort(ref_logits, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0] > 1e-3)[:, None]
    assert clear.mean() > 0.99
    assert np.abs(np.where(clear, fusion - ref_fusion, 0.0)).max() <= 1e-4


def test_onnx_matches_pytorch_at_two_sizes(ckpt: Path, reference, tmp_path: Path) -> None:
    import onnxruntime

    path = tmp_path / "p3mnet.onnx"
    assert main([f"ckpt_path={ckpt}", "format=onnx", f"output={path}"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p3mnet.onnx"]  # no temporary left
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
    for image, expected in reference:
        _assert_close(session.run(None, {"image": image.numpy()}), expected)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_matches_pytorch_at_two_sizes(ckpt: Path, reference, tmp_path: Path) -> None:
    import torch.nn.functional as F

    unpool_check = getattr(F, "_check_unpool_output_size", None)
    path = tmp_path / "p3mnet.pt"
    assert main([f"ckpt_path={ckpt}", "format=torchscript", f"output={path}"]) == 0
    # The tracing workaround is undone after the export.
    assert getattr(F, "_check_unpool_output_size", None) is unpool_check
    scripted = torch.jit.load(str(path))
    for image, expected in reference:
        with torch.inference_mode():
            outputs = [t.numpy() for t in scripted(image)]
        _assert_close(outputs, expected)


def test_usage_errors(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([]) == 2
    assert "ckpt_path is required" in capsys.readouterr().err
    assert main([f"ckpt_path={ckpt}", "format=tflite"]) == 2
    assert "unknown format" in capsys.readouterr().err
    assert main([f"ckpt_path={ckpt}", "colour=red"]) == 2
    assert "colour" in capsys.readouterr().err
    assert main([f"ckpt_path={tmp_path / 'missing.pth'}"]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize("strategy", ["resize", "hybrid"])
def test_onnxruntime_backend_matches_torch_and_exports_once(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    from p3m_lightning import export as export_module
    from p3m_lightning.api import Matter

    monkeypatch.setenv("P3M_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(3)
    rgb = cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (96, 72))
    expected = Matter(ckpt, strategy=strategy).predict(rgb)
    alpha = Matter(ckpt, strategy=strategy, backend="onnxruntime").predict(rgb)
    assert alpha.shape == expected.shape == (72, 96)
    assert np.abs(alpha - expected).max() <= 1e-4
    cached = sorted(p.name for p in (tmp_path / "cache").rglob("*.onnx"))
    assert cached == (
        ["fusion.onnx"] if strategy == "resize" else ["global_logits.onnx", "local.onnx"]
    )

    def no_export(*args, **kwargs):
        raise AssertionError("exported again despite the cache")

    monkeypatch.setattr(export_module, "export_onnx", no_export)
    again = Matter(ckpt, strategy=strategy, backend="onnxruntime").predict(rgb)
    np.testing.assert_array_equal(again, alpha)


def test_onnxruntime_backend_refuses_bf16(ckpt: Path) -> None:
    from p3m_lightning.api import Matter

    with pytest.raises(ValueError, match="precision '32' only"):
        Matter(ckpt, backend="onnxruntime", precision="bf16")
    with pytest.raises(ValueError, match="unknown backend"):
        Matter(ckpt, backend="tensorrt")


# Reduced widths of the other methods (the same as tests/test_methods.py's).
OTHER_METHODS = {
    "modnet": {"hr_channels": 8, "width_mult": 0.25},
    "lf": {
        "growth_rate": 4,
        "block_config": [1, 1, 1, 1],
        "num_init_features": 8,
        "decoder_widths": [8, 8, 8, 8, 8],
        "fusion_width": 8,
    },
    "hatt": {
        "layers": [1, 1, 1, 1],
        "groups": 2,
        "width_per_group": 4,
        "aspp_width": 8,
        "low_width": 8,
        "decoder_width": 8,
    },
    "basic": {"ngf": 8, "n_blocks1": 2, "n_blocks2": 1},
    "dim": {"width": 8, "refiner_channels": 8},
    "alphagan": {"width": 8, "aspp_width": 8},
    "indexnet": {},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OTHER_METHODS))
def test_other_methods_export_with_dynamic_size(name: str, tmp_path: Path) -> None:
    """ONNX of a checkpoint of another method equals PyTorch at a size other than traced."""
    import onnxruntime as ort

    from p3m_lightning.export import main
    from p3m_lightning.models.checkpoint import architecture_record
    from p3m_lightning.models.registry import build_architecture

    torch.manual_seed(0)
    net = build_architecture(name, OTHER_METHODS[name]).eval()
    ckpt = tmp_path / f"{name}.ckpt"
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "architecture": architecture_record(net)}, ckpt)
    assert main([f"ckpt_path={ckpt}", f"output={tmp_path / 'm.onnx'}"]) == 0
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(net.inputs)
    g = torch.Generator().manual_seed(1)
    feeds = {"image": torch.randn(1, 3, 96, 128, generator=g)}
    if "trimap" in net.inputs:
        feeds["trimap"] = torch.full((1, 1, 96, 128), 128.0)
        feeds["trimap"][..., :20, :], feeds["trimap"][..., 60:, :] = 0.0, 255.0
    if "bg" in net.inputs:
        feeds["bg"] = torch.randn(1, 3, 96, 128, generator=g)
    with torch.inference_mode():
        expected = net(*feeds.values())["alpha"].numpy()
    (alpha,) = session.run(None, {k: v.numpy() for k, v in feeds.items()})
    np.testing.assert_allclose(alpha, expected, atol=1e-4)


def test_methods_that_do_not_export_say_why(tmp_path: Path, capsys) -> None:
    from p3m_lightning.export import main
    from p3m_lightning.models.checkpoint import architecture_record
    from p3m_lightning.models.registry import build_architecture

    net = build_architecture(
        "gca", {"encoder_layers": [1, 1, 1, 1], "decoder_layers": [1, 1, 1, 1]}
    )
    ckpt = tmp_path / "gca.ckpt"
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "architecture": architecture_record(net)}, ckpt)
    assert main([f"ckpt_path={ckpt}"]) == 2
    assert "gca does not export with dynamic height and width: guided contextual" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "gca.onnx").exists()
