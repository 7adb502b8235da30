"""Checkpoint I/O: published format round trip, untrusted files, key reporting."""

from __future__ import annotations

import os
import pickle
import zipfile

import pytest
import torch

from p3m_lightning.methods.gfm.network import GFMNet
from p3m_lightning.methods.p3m_net.network import OUTPUTS, P3MNet
from p3m_lightning.methods.p3m_net.published import save_published, to_published
from p3m_lightning.models.checkpoint import architecture_record, load_model, load_weights
from p3m_lightning.models.encoders import TimmEncoder
from p3m_lightning.models.safe_load import CheckpointError


class _RunsCodeWhenUnpickled:
    """Unpickling this calls ``os.mkdir(marker)``: the proof that code would have run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _outputs(model: P3MNet, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.inference_mode():
        out = model.eval()(x)
        return [out[name] for name in OUTPUTS]


def _assert_same_outputs(a: P3MNet, b: P3MNet, x: torch.Tensor) -> None:
    # Compared in one memory layout (load_model returns channels-last): a layout change moves
    # rounding, which max-pool near-ties turn into visible differences.
    a, b = (m.to(memory_format=torch.channels_last) for m in (a, b))
    for name, u, v in zip(OUTPUTS, _outputs(a, x), _outputs(b, x), strict=True):
        assert torch.equal(u, v), name


def test_save_published_matches_manifest(tmp_path, manifest, golden_checkpoint) -> None:
    model = load_model(golden_checkpoint)
    path = tmp_path / "out.pth"
    save_published(model, path)
    saved = torch.load(path, weights_only=True)
    assert list(saved) == ["state_dict"]
    state = saved["state_dict"]
    assert [k for k in state] == [k for k, _, _ in manifest["keys"]]
    for (key, value), (_, shape, dtype) in zip(state.items(), manifest["keys"], strict=True):
        assert list(value.shape) == shape and str(value.dtype) == f"torch.{dtype}", key
    for alias, canonical in manifest["aliases"].items():
        assert torch.equal(state[alias], state[canonical]), alias


def test_round_trip_reproduces_golden_values(tmp_path, golden_state, golden_checkpoint) -> None:
    model = load_model(golden_checkpoint)
    path = tmp_path / "again.pth"
    save_published(model, path)
    state = torch.load(path, weights_only=True)["state_dict"]
    for key, value in golden_state.items():
        assert torch.equal(state[key], value), key
    _assert_same_outputs(model, load_model(path), torch.randn(1, 3, 64, 64))


def test_module_prefix_and_bare_published_dict(tmp_path, golden_state, golden_checkpoint) -> None:
    x = torch.randn(1, 3, 32, 64)
    expected = load_model(golden_checkpoint)
    prefixed = tmp_path / "dp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in golden_state.items()}}, prefixed)
    bare = tmp_path / "bare_published.pth"
    torch.save(dict(golden_state), bare)
    for path in (prefixed, bare):
        _assert_same_outputs(expected, load_model(path), x)


def test_bare_project_state_dict(tmp_path) -> None:
    model = P3MNet().eval()
    path = tmp_path / "bare.pth"
    torch.save(model.state_dict(), path)
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    _assert_same_outputs(model, loaded, torch.randn(1, 3, 32, 32))


def test_bare_state_dict_of_timm_model_needs_net(tmp_path) -> None:
    model = P3MNet(TimmEncoder("resnet18"))
    path = tmp_path / "timm_bare.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_model(path)
    loaded = load_model(path, net=P3MNet(TimmEncoder("resnet18")))
    assert torch.equal(loaded.decoder_final_l.weight, model.decoder_final_l.weight)


def test_published_format_needs_resnet34mp() -> None:
    with pytest.raises(ValueError, match="ResNet-34-mp"):
        to_published(P3MNet(TimmEncoder("resnet18")))


def test_code_in_checkpoint_is_refused_and_never_runs(tmp_path) -> None:
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": _RunsCodeWhenUnpickled(str(marker))}}, path)
    # Sanity check of the crafted file: an unsafe load really would run the code.
    with zipfile.ZipFile(path) as archive:
        assert any(name.endswith("data.pkl") for name in archive.namelist())
    with pytest.raises(CheckpointError, match="evil.pth.*could run arbitrary code"):
        load_model(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_plain_pickle_is_refused(tmp_path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps(_RunsCodeWhenUnpickled(str(marker))))
    with pytest.raises(CheckpointError, match="plain.pkl"):
        load_model(path)
    assert not marker.exists()


def test_missing_file_and_garbage(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_model(tmp_path / "nope.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth.*not a readable"):
        load_model(garbage)


def test_key_problems_are_reported_by_name(tmp_path, golden_state) -> None:
    state = dict(golden_state)
    del state["decoder_final_l.bias"]
    state["tfi_3.extra.weight"] = torch.zeros(1)
    state["decoder0_g.0.weight"] = torch.zeros(64, 64, 1, 1)
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    message = str(err.value)
    assert "broken.pth" in message
    assert "missing keys: decoder_final_l.bias" in message
    assert "unexpected keys: tfi_3.extra.weight" in message
    assert "decoder0_g.0.weight (64, 64, 1, 1) != (64, 64, 3, 3)" in message


def test_load_weights_fills_a_built_network_from_each_format(tmp_path, golden_checkpoint) -> None:
    published = load_model(golden_checkpoint)
    net = P3MNet()
    assert load_weights(net, golden_checkpoint) == "p3m_net"
    for name, value in published.state_dict().items():
        assert torch.equal(net.state_dict()[name], value), name
    # A project (Lightning) checkpoint: `net.*` entries and the architecture record.
    torch.manual_seed(2)
    gfm = GFMNet(width=8)
    project = tmp_path / "last.ckpt"
    state = {f"net.{k}": v for k, v in gfm.state_dict().items()}
    torch.save({"state_dict": state, "architecture": architecture_record(gfm)}, project)
    into = GFMNet(width=8)
    assert load_weights(into, project) == "gfm"
    assert all(torch.equal(v, gfm.state_dict()[k]) for k, v in into.state_dict().items())
    with pytest.raises(CheckpointError, match=r"last.ckpt: a checkpoint of the gfm architecture"):
        load_weights(P3MNet(), project)
    with pytest.raises(CheckpointError, match="last.ckpt: does not match the gfm architecture"):
        load_weights(GFMNet(width=4), project)


def test_loading_takes_the_files_tensors_in_the_networks_layout(tmp_path) -> None:
    torch.manual_seed(0)
    source = P3MNet().eval()
    path = tmp_path / "p3mnet.pth"
    save_published(source, path)
    net = load_model(path)
    for (name, expected), loaded in zip(
        source.state_dict().items(), net.state_dict().values(), strict=True
    ):
        assert loaded.dtype == expected.dtype and torch.equal(loaded, expected), name
    conv = net.encoder.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and conv.requires_grad
    assert [p.requires_grad for p in net.parameters()] == [
        p.requires_grad for p in source.parameters()
    ]
    # A half-precision file loads as the float32 network it describes.
    half = {k: v.half() if v.is_floating_point() else v for k, v in to_published(source).items()}
    torch.save({"state_dict": half}, tmp_path / "half.pth")
    assert load_model(tmp_path / "half.pth").encoder.conv1.weight.dtype == torch.float32
    # A caller's network is loaded into, its parameters kept.
    given = P3MNet()
    weight = given.encoder.conv1.weight
    assert load_model(path, net=given).encoder.conv1.weight is weight
    assert torch.equal(weight, source.encoder.conv1.weight)
