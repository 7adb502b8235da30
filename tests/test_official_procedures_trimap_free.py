"""The trimap-free methods' test procedures against their official test scripts.

Each vector in ``tests/data/official/`` was produced by running the method's official test
script (its own resizing, rounding, clipping and merge, with the scikit-image / OpenCV version
its ``requirements.txt`` pins) on a synthetic photo with deterministic weights
(``tests/data/README.md``). Here the project's network gets the same weights and the project's
strategy the same photo; the mattes must agree to float noise on all but a few pixels (a
near-tie of the semantic argmax may fall the other way on another CPU) and within 1/255 on at
least 99.9 % of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from p3m_lightning.inference import Resize
from p3m_lightning.methods.gfm.inference import GFMHybrid
from p3m_lightning.methods.modnet.inference import MODNetResize
from p3m_lightning.methods.p3m_net.inference import P3MHybrid
from p3m_lightning.models.checkpoint import load_checkpoint
from p3m_lightning.normalization import normalize
from tests.conftest import DATA, golden_tensor

OFFICIAL = DATA / "official"
PHOTOS = np.load(OFFICIAL / "photos_trimap_free.npz")


def normalised(photo: np.ndarray) -> torch.Tensor:
    """The photo as the loaders give it: ImageNet-normalised, (1, 3, H, W)."""
    return normalize(torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255.0)


def published_state(manifest: str) -> dict[str, torch.Tensor]:
    """The golden recipe over an official state dict's names, aliases copied."""
    spec = json.loads((DATA / manifest).read_text())
    aliases = spec.get("aliases", {})
    keys = [(k[0], k[1], k[2] if len(k) > 2 else "float32") for k in spec["keys"]]
    state = {n: golden_tensor(n, s, d) for n, s, d in keys if n not in aliases}
    state.update({n: state[aliases[n]].clone() for n, _, _ in keys if n in aliases})
    return state


def load(tmp_path: Path, state: dict[str, torch.Tensor], architecture: str) -> torch.nn.Module:
    path = tmp_path / f"{architecture}.pth"
    torch.save({"state_dict": state}, path)
    return load_checkpoint(path, architecture=architecture).net


def assert_conforms(ours: torch.Tensor, official: np.ndarray, step: int = 1) -> None:
    ours_np = ours.numpy()[::step, ::step].astype(np.float64)
    diff = np.abs(ours_np - official.astype(np.float64))
    assert ours_np.shape == official.shape
    within_255 = float((diff <= 1 / 255).mean())
    float_noise = float((diff <= 1e-4).mean())
    assert within_255 >= 0.999, f"{within_255:.4%} within 1/255, max {diff.max():.3g}"
    assert float_noise >= 0.999, f"{float_noise:.4%} within 1e-4, max {diff.max():.3g}"


@pytest.fixture(scope="module")
def p3m_net(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    vectors = np.load(OFFICIAL / "p3m_net.npz")
    state = published_state("p3mnet_r34_manifest.json")
    state["decoder0_g.6.bias"] = state["decoder0_g.6.bias"] + torch.from_numpy(
        vectors["bias_offset"]
    )
    return load(tmp_path_factory.mktemp("p3m"), state, "p3m_net")


@pytest.mark.parametrize("size", ["251x333", "400x300"])
@pytest.mark.parametrize(
    ("choice", "strategy"), [("resize", Resize()), ("hybrid", P3MHybrid())], ids=str
)
def test_p3m_net_matches_the_official_script(p3m_net, size, choice, strategy) -> None:
    official = np.load(OFFICIAL / "p3m_net.npz")[f"{size}/{choice}/alpha"]
    with torch.inference_mode():
        ours = strategy(p3m_net, {"image": normalised(PHOTOS[size])})
    assert_conforms(ours, official)


def test_the_fast_resampling_is_not_the_official_matte(p3m_net) -> None:
    """``resampling=torch`` (predict.py's fast choice) is a different matte, by design."""
    official = np.load(OFFICIAL / "p3m_net.npz")["251x333/resize/alpha"]
    with torch.inference_mode():
        fast = Resize(resampling="torch")(p3m_net, {"image": normalised(PHOTOS["251x333"])})
    assert float((np.abs(fast.numpy() - official) <= 1 / 255).mean()) < 0.9


@pytest.fixture(scope="module")
def gfm_net(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    vectors = np.load(OFFICIAL / "gfm.npz")
    state = published_state("gfm_manifest.json")
    scale = float(vectors["cls_scale"])
    state["decoder0_g.6.weight"] = state["decoder0_g.6.weight"] * scale
    state["decoder0_g.6.bias"] = state["decoder0_g.6.bias"] * scale + torch.from_numpy(
        vectors["bias_offset"]
    )
    return load(tmp_path_factory.mktemp("gfm"), state, "gfm")


@pytest.mark.parametrize("size", ["251x333", "400x300"])
@pytest.mark.parametrize(
    ("choice", "strategy"),
    [("resize", Resize(resampling="skimage_0.17")), ("hybrid", GFMHybrid())],
    ids=str,
)
def test_gfm_matches_the_official_script(gfm_net, size, choice, strategy) -> None:
    official = np.load(OFFICIAL / "gfm.npz")[f"{size}/{choice}/alpha"]
    with torch.inference_mode():
        ours = strategy(gfm_net, {"image": normalised(PHOTOS[size])})
    assert_conforms(ours, official)


@pytest.mark.parametrize("size", ["251x333", "400x300", "515x271"])
def test_modnet_matches_the_official_demo(tmp_path: Path, size: str) -> None:
    vectors = np.load(OFFICIAL / "modnet.npz")
    state = {f"module.{k}": v for k, v in published_state("modnet_manifest.json").items()}
    net = load(tmp_path, state, "modnet")
    with torch.inference_mode():
        ours = MODNetResize()(net, {"image": normalised(PHOTOS[size])})
    assert_conforms(ours, vectors[f"{size}/alpha"], step=int(vectors["alpha_step"]))
    png = (ours.numpy() * 255).astype(np.uint8)
    assert float((png == vectors[f"{size}/alpha_png"]).mean()) >= 0.999


@pytest.fixture(scope="module")
def journal_nets() -> dict[str, torch.nn.Module]:
    """Built on first use, one per backbone."""
    return {}


def journal_net(nets: dict[str, torch.nn.Module], backbone: str, file: str) -> torch.nn.Module:
    from p3m_lightning.methods.p3m_journal.network import P3MJournalNet

    if backbone not in nets:
        net = P3MJournalNet(backbone).eval()
        state = {
            k: golden_tensor(k, list(v.shape), "float32") if v.is_floating_point() else v
            for k, v in net.state_dict().items()
        }
        key = "decoder.decoder_final_g.bias"
        offset = np.load(OFFICIAL / f"{file}.npz")["bias_offset"]
        state[key] = state[key] + torch.from_numpy(offset)
        net.load_state_dict(state)
        nets[backbone] = net
    return nets[backbone]


# The journal nets are large: one photo each, and Swin-T's HYBRID (its RESIZE pass is the
# HYBRID's first one).
@pytest.mark.slow
@pytest.mark.parametrize(
    ("backbone", "file", "size", "choice"),
    [
        ("vitae_s", "p3m_vitae_s", "251x333", "resize"),
        ("vitae_s", "p3m_vitae_s", "251x333", "hybrid"),
        ("swin_t", "p3m_swin_t", "545x579", "hybrid"),
    ],
)
def test_journal_p3m_nets_match_the_official_script(journal_nets, backbone, file, size, choice):
    vectors = np.load(OFFICIAL / f"{file}.npz")
    net = journal_net(journal_nets, backbone, file)
    strategy = Resize() if choice == "resize" else P3MHybrid()
    with torch.inference_mode():
        ours = strategy(net, {"image": normalised(PHOTOS[size])})
    assert_conforms(ours, vectors[f"{size}/{choice}/alpha"], step=int(vectors["alpha_step"]))
