"""GFM(r): the official layout and forward, shapes, training, round trip, hybrid test."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from p3m_lightning.methods.gfm.inference import gfm_hybrid_alpha
from p3m_lightning.methods.gfm.loss import GFMLoss
from p3m_lightning.methods.gfm.network import GFMNet
from p3m_lightning.normalization import normalize
from tests.conftest import DATA, golden_tensor

# GFM(backbone='r34', rosta='TT') of github.com/JizhiziLi/GFM core/gfm.py, counted by
# instantiating it (torchvision's ResNet-34 including its unused fc, shared modules once).
OFFICIAL_PARAMS = 55_286_316


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((DATA / "gfm_manifest.json").read_text())


@pytest.fixture(scope="module")
def full_model() -> GFMNet:
    return GFMNet().eval()


def tiny_batch(size: int = 64) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2).sqrt()
    alpha = (1.0 - (r - size / 4).clamp(0, 4) / 4).view(1, 1, size, size)
    trimap = torch.where(alpha >= 1, 255.0, torch.where(alpha <= 0, 0.0, 128.0))
    fg = torch.rand(1, 3, size, size, generator=gen) * 0.5 + 0.5
    bg = torch.rand(1, 3, size, size, generator=gen) * 0.5
    image = alpha * fg + (1 - alpha) * bg
    return {
        "image": normalize(image),
        "fg": normalize(fg),
        "bg": normalize(bg),
        "alpha": alpha,
        "trimap": trimap,
    }


def test_names_and_shapes_equal_the_official_state_dict(full_model, manifest) -> None:
    ours = [[name, list(t.shape)] for name, t in full_model.state_dict().items()]
    assert ours == manifest["keys"]


def test_parameter_count_equals_the_official_model(full_model, manifest) -> None:
    n_params = sum(p.numel() for p in full_model.parameters())
    assert n_params == OFFICIAL_PARAMS == manifest["n_params"]


def test_two_class_variants_match_the_official_count() -> None:
    # The official GFM(backbone='r34', rosta='FT' or 'BT'): only decoder0_g's last conv differs.
    model = GFMNet(rosta="BT")
    assert sum(p.numel() for p in model.parameters()) == 55_285_739
    assert model.decoder0_g[6].weight.shape == (2, 64, 3, 3)


@pytest.mark.slow
def test_forward_matches_the_official_code(full_model, manifest) -> None:
    """Golden weights in the official model vs ours (vectors made from the authors' code)."""
    ref = np.load(DATA / "gfm_r34_tt_forward.npz")
    state = full_model.state_dict()
    filled = {}
    for name, shape in manifest["keys"]:
        source = manifest["aliases"].get(name, name)
        filled[name] = golden_tensor(source, shape, str(state[name].dtype).split(".")[1])
    full_model.load_state_dict(filled)
    image = normalize(torch.from_numpy(ref["input_rgb255"]) / 255.0)
    with torch.inference_mode():
        out = full_model(image)
    glance = torch.sigmoid(out["glance_logits"]).numpy()
    assert np.abs(glance - ref["glance_sigmoid"]).max() < 1e-4
    assert np.abs(out["focus"].numpy() - ref["focus"]).max() < 1e-4
    assert np.abs(out["alpha"].numpy() - ref["fusion"]).max() < 1e-4


@pytest.mark.parametrize(("rosta", "classes"), [("TT", 3), ("FT", 2), ("BT", 2)])
def test_outputs_at_a_small_size(rosta: str, classes: int) -> None:
    torch.manual_seed(0)
    model = GFMNet(rosta=rosta, width=8).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 64, 96))
    assert set(out) == {"alpha", "glance_logits", "focus"}
    assert out["alpha"].shape == out["focus"].shape == (2, 1, 64, 96)
    assert out["glance_logits"].shape == (2, classes, 64, 96)
    for key in ("alpha", "focus"):
        assert out[key].min() >= 0.0 and out[key].max() <= 1.0


def test_tt_fusion_takes_focus_only_on_the_predicted_transition() -> None:
    torch.manual_seed(0)
    out = GFMNet(width=8).eval()(torch.randn(1, 3, 64, 64))
    cls = out["glance_logits"].argmax(1, keepdim=True)
    expected = torch.where(cls == 1, out["focus"], (cls == 2).float())
    assert torch.equal(out["alpha"], expected)


def test_rejects_sizes_not_divisible_by_32() -> None:
    with pytest.raises(ValueError, match="divisible by 32"):
        GFMNet(width=8)(torch.zeros(1, 3, 64, 80))


def test_rejects_unknown_rosta() -> None:
    with pytest.raises(ValueError, match="rosta"):
        GFMNet(rosta="RIM", width=8)


def test_adam_steps_lower_the_loss(adam_losses) -> None:
    torch.manual_seed(0)
    model = GFMNet(width=4).train()
    loss_fn = GFMLoss()
    batch = tiny_batch(64)
    # 15 steps, not 5: the first steps oscillate. After 5 the ratio was 0.87 at 1 and 2 threads
    # here, 0.75-0.89 with the start perturbed by 1e-5, and 0.906 on a 2-core AVX2 Xeon (the
    # 0.9 bound failed there). After 15 it is 0.53 at 1 and 2 threads, AVX2 or AVX-512
    # kernels, 0.45-0.56 with the start perturbed by 1e-5 to 1e-3, and 0.37-0.80 over 8 other
    # seeds: below 0.9 by 0.1 even for another initialisation.
    losses = adam_losses(model, loss_fn, batch, steps=15)
    assert losses[-1] < 0.9 * losses[0]


def test_state_dict_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = GFMNet(rosta="FT", width=8).eval()
    path = tmp_path / "gfm.pth"
    torch.save(model.state_dict(), path)
    rebuilt = GFMNet(**model.arch_config()).eval()
    rebuilt.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        a, b = model(x), rebuilt(x)
    for key in a:
        assert torch.equal(a[key], b[key])


def test_imagenet_weights_load_from_a_local_file(tmp_path) -> None:
    source = GFMNet(width=8)
    path = tmp_path / "resnet34.pth"
    torch.save(source.resnet.state_dict(), path)
    model = GFMNet(width=8, pretrained_path=str(path))
    assert torch.equal(model.encoder0[0].weight, source.resnet.conv1.weight)


class _StubGFM(nn.Module):
    """Glance says bg / transition / fg in three vertical bands; focus is 0.3 everywhere."""

    def __init__(self, rosta: str) -> None:
        super().__init__()
        self.rosta = rosta
        self.sizes: list[tuple[int, int]] = []

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = image.shape[-2:]
        self.sizes.append((h, w))
        n_cls = 3 if self.rosta == "TT" else 2
        band = (torch.arange(w) * n_cls // w).view(1, 1, 1, w).expand(1, 1, h, w)
        logits = torch.stack([(band == c)[:, 0].float() * 10 for c in range(n_cls)], dim=1)
        focus = torch.full((1, 1, h, w), 0.3)
        return {"glance_logits": logits, "focus": focus, "alpha": focus}


def test_hybrid_runs_glance_at_a_third_and_focus_at_half() -> None:
    stub = _StubGFM("TT")
    alpha = gfm_hybrid_alpha(stub, torch.zeros(1, 3, 300, 960))
    assert stub.sizes == [(96, 320), (128, 480)]
    assert alpha.shape == (300, 960)
    # Left band background, middle band focus, right band foreground; blurred borders -> focus.
    assert torch.all(alpha[:, :300] == 0.0)
    assert torch.allclose(alpha[:, 340:620], torch.tensor(0.3))
    assert torch.all(alpha[:, 660:] == 1.0)
    border = alpha[0, 300:340]
    assert torch.all((border == 0.0) | (border == 0.3))


def test_hybrid_bt_subtracts_focus_from_the_dilated_foreground() -> None:
    alpha = gfm_hybrid_alpha(_StubGFM("BT"), torch.zeros(1, 3, 192, 192))
    assert torch.allclose(alpha[:, :80], torch.tensor(0.0))
    assert torch.allclose(alpha[:, 112:], torch.tensor(0.7))
