"""MODNet: the official layout and forward, shapes, training, round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from p3m_lightning.methods.modnet.inference import modnet_alpha, modnet_size
from p3m_lightning.methods.modnet.loss import MODNetLoss
from p3m_lightning.methods.modnet.network import MODNet
from p3m_lightning.normalization import normalize
from tests.conftest import DATA, golden_tensor
from tests.models.test_gfm import tiny_batch

# MODNet() of github.com/ZHKKKe/MODNet src/models/modnet.py (hr_channels=32, MobileNetV2
# without classifier), counted by instantiating it (the shared encoder counted once).
OFFICIAL_PARAMS = 6_487_075


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((DATA / "modnet_manifest.json").read_text())


@pytest.fixture(scope="module")
def full_model() -> MODNet:
    return MODNet().eval()


def test_names_and_shapes_equal_the_official_state_dict(full_model, manifest) -> None:
    ours = [[name, list(t.shape)] for name, t in full_model.state_dict().items()]
    assert ours == manifest["keys"]


def test_parameter_count_equals_the_official_model(full_model, manifest) -> None:
    n_params = sum(p.numel() for p in full_model.parameters())
    assert n_params == OFFICIAL_PARAMS == manifest["n_params"]


def test_released_checkpoint_layout_loads(full_model, manifest) -> None:
    """The released checkpoint is a DataParallel state dict: every key starts with module."""
    state = full_model.state_dict()
    released = {f"module.{name}": torch.zeros(shape, dtype=state[name].dtype)
                for name, shape in manifest["keys"]}  # fmt: skip
    stripped = {k.removeprefix("module."): v for k, v in released.items()}
    model = MODNet()
    model.load_state_dict(stripped)
    assert model.lr_branch.backbone.model.features[0][0].weight.abs().sum() == 0


def test_forward_matches_the_official_code(full_model, manifest) -> None:
    """Golden weights in the official model vs ours (vectors made from the authors' code)."""
    ref = np.load(DATA / "modnet_forward.npz")
    state = full_model.state_dict()
    filled = {}
    for name, shape in manifest["keys"]:
        source = manifest["aliases"].get(name, name)
        filled[name] = golden_tensor(source, shape, str(state[name].dtype).split(".")[1])
    full_model.load_state_dict(filled)
    image = normalize(torch.from_numpy(ref["input_m11"]) * 0.5 + 0.5)
    with torch.inference_mode():
        out = full_model(image)
    assert np.abs(out["semantic"].numpy() - ref["semantic"]).max() < 1e-4
    assert np.abs(out["detail"].numpy() - ref["detail"]).max() < 1e-4
    assert np.abs(out["alpha"].numpy() - ref["matte"]).max() < 1e-4


def test_outputs_at_a_small_size() -> None:
    torch.manual_seed(0)
    model = MODNet(hr_channels=8, width_mult=0.25).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 64, 96))
    assert set(out) == {"alpha", "semantic", "detail"}
    assert out["alpha"].shape == out["detail"].shape == (2, 1, 64, 96)
    assert out["semantic"].shape == (2, 1, 4, 6)
    for value in out.values():
        assert value.min() >= 0.0 and value.max() <= 1.0


def test_rejects_sizes_not_divisible_by_32() -> None:
    with pytest.raises(ValueError, match="divisible by 32"):
        MODNet(hr_channels=8, width_mult=0.25)(torch.zeros(1, 3, 48, 64))


def test_adam_steps_lower_the_loss(adam_losses) -> None:
    torch.manual_seed(0)
    model = MODNet(hr_channels=8, width_mult=0.25).train()
    loss_fn = MODNetLoss()
    batch = tiny_batch(64)
    losses = adam_losses(model, loss_fn, batch, steps=6)
    assert losses[-1] < 0.9 * losses[0]


def test_state_dict_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = MODNet(hr_channels=8, width_mult=0.25).eval()
    path = tmp_path / "modnet.pth"
    torch.save(model.state_dict(), path)
    rebuilt = MODNet(**model.arch_config()).eval()
    rebuilt.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        a, b = model(x), rebuilt(x)
    for key in a:
        assert torch.equal(a[key], b[key])


def test_encoder_weights_load_from_a_local_file(tmp_path) -> None:
    source = MODNet(hr_channels=8, width_mult=0.25)
    path = tmp_path / "mobilenetv2.pth"
    torch.save(source.backbone.model.state_dict(), path)
    model = MODNet(hr_channels=8, width_mult=0.25, pretrained_path=str(path))
    assert torch.equal(
        model.lr_branch.backbone.model.features[0][0].weight,
        source.backbone.model.features[0][0].weight,
    )


@pytest.mark.parametrize(
    ("h", "w", "expected"),
    [
        (1080, 1920, (512, 896)),
        (300, 400, (512, 672)),
        (400, 700, (384, 672)),
        (2000, 600, (1696, 512)),
    ],
)
def test_modnet_size_follows_the_reference_rule(h: int, w: int, expected: tuple[int, int]) -> None:
    assert modnet_size(h, w) == expected


def test_modnet_alpha_runs_one_pass_and_restores_the_size() -> None:
    calls: list[tuple[int, ...]] = []

    def stub(image: torch.Tensor) -> dict[str, torch.Tensor]:
        calls.append(tuple(image.shape))
        return {"alpha": torch.full((1, 1, *image.shape[-2:]), 0.25)}

    alpha = modnet_alpha(stub, torch.zeros(1, 3, 300, 400))
    assert calls == [(1, 3, 512, 672)]
    assert alpha.shape == (300, 400)
    assert torch.allclose(alpha, torch.tensor(0.25))
