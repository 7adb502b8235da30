"""BASIC (Background Matting): official layout and forward, shapes, cues, training, round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from p3m_lightning.methods.basic.loss import BASICLoss
from p3m_lightning.methods.basic.network import BASICNet, plate_segmentation
from p3m_lightning.normalization import denormalize, normalize
from tests.conftest import DATA, golden_tensor

# ResnetConditionHR(input_nc=(3, 3, 1, 4), output_nc=4, n_blocks1=7, n_blocks2=3) of
# github.com/senguptaumd/Background-Matting networks.py, counted by instantiating it.
OFFICIAL_PARAMS = 17_908_420

TINY = {"ngf": 8, "n_blocks1": 2, "n_blocks2": 1}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((DATA / "basic_manifest.json").read_text())


@pytest.fixture(scope="module")
def full_model() -> BASICNet:
    return BASICNet().eval()


def tiny_batch(size: int = 64) -> dict[str, torch.Tensor]:
    """A soft disc of foreground over a plate; the image is their exact composite."""
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2).sqrt()
    alpha = (1.0 - (r - size / 4).clamp(0, 4) / 4).view(1, 1, size, size)
    fg = torch.rand(1, 3, size, size, generator=gen) * 0.5 + 0.5
    bg = torch.rand(1, 3, size, size, generator=gen) * 0.4
    image = alpha * fg + (1 - alpha) * bg
    return {"image": normalize(image), "fg": normalize(fg), "bg": normalize(bg), "alpha": alpha}


def test_names_and_shapes_equal_the_official_state_dict(full_model, manifest) -> None:
    ours = [[name, list(t.shape)] for name, t in full_model.state_dict().items()]
    assert ours == manifest["keys"]


def test_parameter_count_equals_the_official_model(full_model, manifest) -> None:
    n_params = sum(p.numel() for p in full_model.parameters())
    assert n_params == OFFICIAL_PARAMS == manifest["n_params"]


def test_forward_matches_the_official_code(full_model, manifest) -> None:
    """Golden weights in the official model vs ours (``basic_forward.npz`` made with the
    authors' ``ResnetConditionHR`` in eval mode on [-1, 1] inputs, segmentation given)."""
    ref = np.load(DATA / "basic_forward.npz")
    state = full_model.state_dict()
    filled = {
        name: golden_tensor(name, shape, str(state[name].dtype).split(".")[1])
        for name, shape in manifest["keys"]
    }
    full_model.load_state_dict(filled)
    gen = torch.Generator().manual_seed(7)
    image, plate = (torch.rand(1, 3, 64, 96, generator=gen) * 2 - 1 for _ in range(2))
    seg = torch.rand(1, 1, 64, 96, generator=gen) * 2 - 1
    assert np.allclose([image.sum(), plate.sum(), seg.sum()], ref["input_sums"])
    captured = {}

    def keep_tanh_input(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
        captured["logit"] = args[0]

    hook = full_model.model_al_out[-1].register_forward_hook(keep_tanh_input)
    with torch.inference_mode():
        out = full_model(normalize((image + 1) / 2), normalize((plate + 1) / 2), (seg + 1) / 2)
    hook.remove()
    # Compared before the tanh: golden weights saturate it.
    assert np.abs(captured["logit"][:, :, ::2, ::2].numpy() - ref["alpha_logit"]).max() < 1e-4
    fg_signed = (2 * out["fg_raw"] - 1)[:, :, ::2, ::2].numpy()
    assert np.abs(fg_signed - ref["fg_raw"]).max() < 1e-4
    alpha_signed = (2 * out["alpha"] - 1)[:, :, ::2, ::2].numpy()
    assert np.abs(alpha_signed - ref["alpha_tanh"]).max() < 1e-5


def test_outputs_at_a_small_size() -> None:
    torch.manual_seed(0)
    model = BASICNet(**TINY).eval()
    batch = tiny_batch(64)
    image = torch.cat([batch["image"], torch.randn(1, 3, 64, 64)])
    plate = torch.cat([batch["bg"], torch.randn(1, 3, 64, 64)])
    with torch.inference_mode():
        out = model(image[:, :, :, :48], plate[:, :, :, :48])
    assert set(out) == {"alpha", "fg", "fg_raw", "seg"}
    assert out["alpha"].shape == out["seg"].shape == (2, 1, 64, 48)
    assert out["fg"].shape == out["fg_raw"].shape == (2, 3, 64, 48)
    for key in ("alpha", "fg", "seg"):
        assert out[key].min() >= 0.0 and out[key].max() <= 1.0


def test_fg_output_is_the_image_where_alpha_is_nearly_one() -> None:
    torch.manual_seed(0)
    model = BASICNet(**TINY).eval()
    with torch.no_grad():
        model.model_al_out[-2].bias.fill_(100.0)  # tanh -> 1: alpha 1 everywhere
    batch = tiny_batch(32)
    with torch.inference_mode():
        out = model(batch["image"], batch["bg"])
    assert torch.all(out["alpha"] == 1.0)
    assert torch.allclose(out["fg"], denormalize(batch["image"]), atol=1e-6)
    assert not torch.allclose(out["fg_raw"], out["fg"], atol=1e-2)


def test_motion_encoder_is_frozen_and_never_reaches_an_output() -> None:
    torch.manual_seed(0)
    model = BASICNet(**TINY).eval()
    assert not any(p.requires_grad for p in model.model_enc_multi.parameters())
    batch = tiny_batch(32)
    with torch.inference_mode():
        before = model(batch["image"], batch["bg"])
        for p in model.model_enc_multi.parameters():
            p.add_(1.0)
        after = model(batch["image"], batch["bg"])
    for key in before:
        assert torch.equal(before[key], after[key])


def test_plate_segmentation_finds_the_subject() -> None:
    bg = torch.full((1, 3, 96, 96), 0.3)
    image = bg.clone()
    image[:, :, 24:72, 24:72] = 0.8  # a 48-px subject
    image[:, :, 5, 5] = 0.9  # a single-pixel speck of plate noise
    seg = plate_segmentation(image, bg)
    assert seg.shape == (1, 1, 96, 96)
    assert seg[0, 0, 48, 48] == pytest.approx(1.0, abs=1e-6)  # deep inside
    assert seg[0, 0, 5, 5] == 0.0  # the speck is eroded away
    assert seg[0, 0, 48, 90] < 1e-3  # far outside
    assert 0.2 < seg[0, 0, 48, 24] < 0.8  # the edge is soft
    assert torch.all(plate_segmentation(bg, bg) == 0.0)


def test_given_segmentation_replaces_the_derived_one() -> None:
    torch.manual_seed(0)
    model = BASICNet(**TINY).eval()
    batch = tiny_batch(32)
    ones = torch.ones(1, 1, 32, 32)
    with torch.inference_mode():
        derived = model(batch["image"], batch["bg"])
        given = model(batch["image"], batch["bg"], ones)
    assert torch.equal(given["seg"], ones)
    assert not torch.equal(derived["seg"], ones)
    assert not torch.equal(derived["alpha"], given["alpha"])


def test_rejects_sizes_not_divisible_by_4() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        BASICNet(**TINY)(torch.zeros(1, 3, 64, 62), torch.zeros(1, 3, 64, 62))


def test_adam_steps_lower_the_loss(adam_losses) -> None:
    torch.manual_seed(0)
    model = BASICNet(**TINY).train()
    losses = adam_losses(model, BASICLoss(), tiny_batch(64), steps=5)
    assert losses[-1] < 0.9 * losses[0]


def test_state_dict_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = BASICNet(**TINY).eval()
    path = tmp_path / "basic.pth"
    torch.save(model.state_dict(), path)
    rebuilt = BASICNet(**model.arch_config()).eval()
    rebuilt.load_state_dict(torch.load(path, weights_only=True))
    batch = tiny_batch(32)
    with torch.inference_mode():
        a, b = model(batch["image"], batch["bg"]), rebuilt(batch["image"], batch["bg"])
    for key in a:
        assert torch.equal(a[key], b[key])


def test_released_checkpoint_layout_loads_from_a_local_file(tmp_path) -> None:
    """The official checkpoints come from ``nn.DataParallel``: names carry ``module.``."""
    torch.manual_seed(0)
    source = BASICNet(**TINY)
    path = tmp_path / "netG_epoch_0.pth"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    model = BASICNet(**TINY, pretrained_path=str(path))
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor)
