"""P3M-Net against the published reference: conformance vectors, shapes, sizes, encoders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from p3m_lightning.methods.p3m_net.network import OUTPUTS, P3MNet
from p3m_lightning.models.checkpoint import load_model
from p3m_lightning.models.encoders import ResNet34MP, TimmEncoder
from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[2]

FIELDS = {
    "global": "global_logits",
    "local": "local",
    "fusion": "fusion",
    "side2": "side2",
    "side1": "side1",
    "side0": "side0",
}


@pytest.fixture(scope="module")
def golden_outputs(golden_checkpoint) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]:
    ref = dict(np.load(DATA / "p3mnet_r34_forward.npz"))
    model = load_model(golden_checkpoint)
    with torch.inference_mode():
        out = model(torch.from_numpy(ref["input"]))
    return ref, out


@pytest.mark.parametrize("name", ["global", "side2", "side1", "side0"])
def test_logits_match_reference(golden_outputs, name: str) -> None:
    ref, out = golden_outputs
    ours = out[FIELDS[name]].numpy()
    expected = ref[name]
    rel = np.abs(ours - expected).max() / np.abs(expected).max()
    assert rel < 1e-4, f"{name}: relative difference {rel:.2e}"


def test_local_matches_reference(golden_outputs) -> None:
    ref, out = golden_outputs
    assert np.abs(out["local"].numpy() - ref["local"]).max() < 1e-4


def test_fusion_matches_reference_except_near_ties(golden_outputs) -> None:
    ref, out = golden_outputs
    diff = np.abs(out["fusion"].numpy() - ref["fusion"])[:, 0]
    top2 = np.sort(ref["global"], axis=1)[:, -2:]
    near_tie = (top2[:, 1] - top2[:, 0]) < 1e-3
    assert diff[~near_tie].max() < 1e-4
    assert (diff > 1e-4).mean() < 1e-3


def test_published_architecture_size() -> None:
    model = P3MNet()
    n_params = sum(p.numel() for p in model.parameters())
    assert 39.4e6 < n_params < 39.6e6
    assert isinstance(model.encoder, ResNet34MP)


def test_output_is_named_and_shaped() -> None:
    model = P3MNet().eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 64, 96))
    assert set(out) == {*OUTPUTS, "alpha"}
    assert out["alpha"] is out["fusion"]
    assert out["global_logits"].shape == (1, 3, 64, 96)
    local, fusion = out["local"], out["fusion"]
    assert local.shape == fusion.shape == (1, 1, 64, 96)
    assert float(local.min()) >= 0.0 and float(local.max()) <= 1.0
    assert set(torch.unique(fusion[fusion != local]).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize(("h", "w", "hint"), [(100, 96, "96 or 128"), (64, 20, "32")])
def test_bad_input_size_names_valid_sizes(h: int, w: int, hint: str) -> None:
    with pytest.raises(ValueError, match=f"{h}x{w}") as err:
        P3MNet()(torch.randn(1, 3, h, w))
    assert hint in str(err.value)


@pytest.mark.parametrize(
    ("name", "levels_from_timm"),
    [("resnet18", 5), ("convnext_atto", 4)],
)
def test_timm_encoders_random_weights(name: str, levels_from_timm: int) -> None:
    encoder = TimmEncoder(name)
    assert len(encoder.model.feature_info.channels()) == levels_from_timm
    assert len(encoder.out_channels) == 6
    model = P3MNet(encoder).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        out = model(x)
        feats, indices = model.encoder(x)
    assert [f.shape[-1] for f in feats] == [64, 32, 16, 8, 4, 2]
    assert [f.shape[1] for f in feats] == list(encoder.out_channels)
    assert indices == []
    assert out["local"].shape == (2, 1, 64, 64)
    assert torch.isfinite(out["global_logits"]).all()


def test_timm_encoder_trains() -> None:
    model = P3MNet(TimmEncoder("resnet18")).train()
    out = model(torch.randn(2, 3, 64, 64))
    sum(t.float().mean() for t in out.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_resnet34mp_imagenet_weights_from_local_file(tmp_path) -> None:
    import torchvision

    reference = torchvision.models.resnet34()
    path = tmp_path / "resnet34_imagenet.pth"
    torch.save(reference.state_dict(), path)
    encoder = ResNet34MP(weights_path=str(path))
    for key, value in reference.state_dict().items():
        assert torch.equal(encoder.state_dict()[key], value), key


def test_published_r34mp_imagenet_format(tmp_path) -> None:
    source = ResNet34MP()
    wrapped = {"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}
    path = tmp_path / "r34mp_pretrained_imagenet.pth.tar"
    torch.save(wrapped, path)
    encoder = ResNet34MP(weights_path=str(path))
    assert torch.equal(encoder.conv1.weight, source.conv1.weight)


def test_imagenet_file_for_wrong_network_is_named(tmp_path) -> None:
    path = tmp_path / "not_resnet.pth"
    torch.save({"foo.weight": torch.zeros(3)}, path)
    with pytest.raises(RuntimeError, match="not_resnet.pth.*missing"):
        ResNet34MP(weights_path=str(path))


def test_timm_encoder_weights_from_local_file(tmp_path) -> None:
    import timm

    source = timm.create_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    encoder = TimmEncoder("resnet18", weights_path=str(path))
    assert torch.equal(encoder.model.conv1.weight, source.conv1.weight)


def test_inference_is_repeatable_in_channels_last(golden_checkpoint) -> None:
    # Overlapping pools yield duplicate unpooling indices; resolving them must not race.
    model = load_model(golden_checkpoint)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        first = model(x)["local"]
        assert all(torch.equal(first, model(x)["local"]) for _ in range(4))


def test_folded_batchnorm_stays_within_conformance(golden_checkpoint) -> None:
    ref = dict(np.load(DATA / "p3mnet_r34_forward.npz"))
    model = load_model(golden_checkpoint, fuse_bn=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    with torch.inference_mode():
        out = model(torch.from_numpy(ref["input"]))
    assert np.abs(out["local"].numpy() - ref["local"]).max() < 1e-4
    for name in ("global", "side2", "side1", "side0"):
        ours = out[FIELDS[name]].numpy()
        assert np.abs(ours - ref[name]).max() / np.abs(ref[name]).max() < 1e-4, name


def test_fusing_a_training_model_is_refused() -> None:
    from p3m_lightning.models.bn_folding import fuse_conv_bn

    with pytest.raises(ValueError, match="eval mode"):
        fuse_conv_bn(P3MNet().train())


def test_fusing_timm_encoder_keeps_outputs() -> None:
    from p3m_lightning.models.bn_folding import fuse_conv_bn

    model = P3MNet(TimmEncoder("resnet18")).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        expected = model(x)["global_logits"]
        fused = fuse_conv_bn(model)(x)["global_logits"]
    torch.testing.assert_close(fused, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "outputs",
    [("fusion",), ("global_logits",), ("local",), ("side1", "local"), ("side0",)],
)
def test_output_selection_equals_full_forward(golden_outputs, golden_checkpoint, outputs) -> None:
    ref, full = golden_outputs
    model = load_model(golden_checkpoint)
    with torch.inference_mode():
        part = model(torch.from_numpy(ref["input"]), outputs=outputs)
    assert set(part) == set(outputs) | ({"alpha"} if "fusion" in outputs else set())
    for name in outputs:
        torch.testing.assert_close(part[name], full[name], rtol=0, atol=0)


def test_output_selection_skips_unused_layers(golden_checkpoint) -> None:
    model = load_model(golden_checkpoint)
    ran: set[str] = set()
    for name, module in model.named_children():
        module.register_forward_hook(lambda m, a, o, name=name: ran.add(name))
    with torch.inference_mode():
        model(torch.zeros(1, 3, 64, 64), outputs=("global_logits",))
    assert not any(n.endswith("_l") or n.startswith(("tfi", "sbfi")) for n in ran), ran
    ran.clear()
    with torch.inference_mode():
        model(torch.zeros(1, 3, 64, 64), outputs=("local",))
    assert "decoder0_g" not in ran and "dbfi_0" not in ran and "decoder0_l" in ran
    with pytest.raises(ValueError, match="unknown P3M-Net outputs"):
        model(torch.zeros(1, 3, 64, 64), outputs=("trimap",))


def test_inference_path_imports_no_heavy_packages() -> None:
    code = (
        "import sys\n"
        "import p3m_lightning.api, p3m_lightning.inference, p3m_lightning.imageio\n"
        "from p3m_lightning.methods.p3m_net.network import P3MNet\n"
        "from p3m_lightning.models.encoders import ResNet34MP\n"
        "import torch\n"
        "with torch.inference_mode():\n"
        "    P3MNet().eval()(torch.zeros(1, 3, 64, 64))\n"
        # scipy and sympy: imported by official resizing and by F.max_unpool2d's size check.
        "heavy = ('torchvision', 'pytorch_lightning', 'lightning', 'wandb', 'timm', 'scipy',"
        " 'sympy')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "[]", out


def _conv1_heights(model: P3MNet) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    heights: list[int] = []
    handle = model.encoder.conv1.register_forward_hook(
        lambda m, a, o: heights.append(a[0].shape[-2])
    )
    return heights, handle


@pytest.mark.parametrize("fuse_bn", [False, True])
@pytest.mark.parametrize("band_rows", [4, 12, 64])
def test_banded_local_pass_equals_whole_map_bit_for_bit(
    golden_checkpoint, fuse_bn: bool, band_rows: int
) -> None:
    # 288 rows: 144 stride-2 rows, bands narrower than the halo (4), not dividing the map
    # (12, 64: a shorter last band), the first and last bands at the image borders.
    model = load_model(golden_checkpoint, fuse_bn=fuse_bn)
    x = torch.randn(2, 3, 288, 96, generator=torch.Generator().manual_seed(1))
    heights, handle = _conv1_heights(model)
    with torch.inference_mode():
        whole = model(x, outputs=("local",), band_rows=0)["local"]
        assert heights == [288]
        heights.clear()
        banded = model(x, outputs=("local",), band_rows=band_rows)["local"]
    handle.remove()
    # The image in bands (with conv1's context), 144 / band_rows of them.
    assert max(heights) < 288 and len(heights) == -(-144 // band_rows)
    assert banded.shape == whole.shape
    assert torch.equal(banded, whole)


def test_banded_local_pass_in_nchw_equals_whole_map(golden_checkpoint) -> None:
    model = load_model(golden_checkpoint).to(memory_format=torch.contiguous_format)
    x = torch.randn(1, 3, 160, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        whole = model(x, outputs=("local",), band_rows=0)["local"]
        assert torch.equal(model(x, outputs=("local",), band_rows=8)["local"], whole)


def test_local_pass_is_banded_only_without_gradients_and_outside_tracing(
    golden_checkpoint,
) -> None:
    from p3m_lightning.export import _traceable_max_unpool

    model = load_model(golden_checkpoint).requires_grad_(False)  # traceable
    x = torch.randn(1, 3, 64, 64)
    heights, handle = _conv1_heights(model)
    with torch.no_grad():
        model(x, outputs=("local",), band_rows=4)
        assert max(heights) < 64
        heights.clear()
        with _traceable_max_unpool():
            # check_trace would run the function again untraced, which bands.
            torch.jit.trace(
                lambda image: model(image, outputs=("local",), band_rows=4)["local"],
                x,
                check_trace=False,
            )
        assert [int(h) for h in heights] == [64]
        heights.clear()
        # Other outputs, or a map no taller than one band, run whole.
        model(x, outputs=("local", "side0"), band_rows=4)
        model(x, outputs=("local",), band_rows=32)
        assert heights == [64, 64]
        heights.clear()
    with torch.enable_grad():
        model(x.requires_grad_(), outputs=("local",), band_rows=4)
    handle.remove()
    assert heights == [64]
    with pytest.raises(ValueError, match="multiple of 4"):
        model(x, outputs=("local",), band_rows=6)
