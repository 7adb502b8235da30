"""The test strategies by value: a stub network with known outputs, and the size rules."""

from __future__ import annotations

import pytest
import torch

from p3m_lightning.inference import Resize, network_size
from p3m_lightning.methods.p3m_net.inference import hybrid_alpha


class _Stub(torch.nn.Module):
    """Known outputs: the trimap classes 0 | 1 | 2 in three vertical bands, local alpha 0.3."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[int, int]] = []

    def forward(self, image: torch.Tensor, outputs=None) -> dict[str, torch.Tensor]:
        b, _, h, w = image.shape
        self.sizes.append((h, w))
        column = torch.arange(w).view(1, 1, 1, w).expand(b, 1, h, w)
        classes = (column >= w // 3).long() + (column >= 2 * w // 3).long()
        logits = torch.nn.functional.one_hot(classes[:, 0], 3).permute(0, 3, 1, 2).float() * 5
        local = torch.full((b, 1, h, w), 0.3)
        fusion = local * (classes == 1) + (classes == 2).float()
        return {"global_logits": logits, "local": local, "fusion": fusion, "alpha": fusion}


def test_hybrid_takes_the_local_alpha_where_the_trimap_is_unknown() -> None:
    stub = _Stub()
    alpha = hybrid_alpha(stub, torch.zeros(1, 3, 192, 192))
    assert stub.sizes == [(96, 96), (192, 192)]  # the trimap at half size, local at full size
    # Well inside each band: background 0, foreground 1, transition the local alpha.
    inner = alpha[1:-1]
    assert torch.all(inner[:, :55] == 0.0)
    assert torch.allclose(alpha[:, 70:122], torch.tensor(0.3))
    assert torch.all(inner[:, 137:-1] == 1.0)
    # Between bands the resized trimap holds in-between values: the local alpha is used there;
    # so on the outermost rows and columns, which the reference's resizing blends with 0.
    values = torch.unique(alpha)
    assert all(v in (0.0, 1.0) or abs(v - 0.3) < 1e-6 for v in values.tolist()), values
    assert torch.allclose(alpha[0, 137:], torch.tensor(0.3))


def test_resize_returns_the_fusion_resized_back() -> None:
    alpha = Resize()(_Stub(), {"image": torch.zeros(1, 3, 192, 192)})
    assert alpha.shape == (192, 192)
    inner = alpha[1:-1]
    assert torch.all(inner[:, :55] == 0.0) and torch.all(inner[:, 137:-1] == 1.0)
    assert torch.allclose(alpha[1:-1, 70:122], torch.tensor(0.3))
    # scikit-image 0.14's constant border: enlarging 2x blends the outermost pixels with 0.
    assert torch.allclose(alpha[0, 137:-1], torch.tensor(0.75))


@pytest.mark.parametrize(
    ("size", "ratio", "max_side", "expected"),
    [
        ((1080, 1920), 0.5, 1600, (512, 960)),  # halved, rounded down to 32
        ((1080, 1920), 1.0, 1600, (1056, 1600)),  # the 1600 cap
        ((4000, 3000), 1.0, 1000, (992, 992)),  # a cap that is not a multiple of 32
        ((20, 50), 0.5, 1600, (32, 32)),  # never below one 32-pixel step
        ((95, 64), 1.0, 40, (32, 32)),
    ],
)
def test_network_size_rules(size, ratio, max_side, expected) -> None:
    assert network_size(*size, ratio, max_side) == expected
