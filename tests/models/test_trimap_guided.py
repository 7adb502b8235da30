"""Tests of the shared trimap-guided clamping."""

from __future__ import annotations

import pytest
import torch

from p3m_lightning.models.trimap_guided import trimap_guided, trimap_levels


def test_trimap_guided_imposes_known_regions_and_keeps_unknown() -> None:
    alpha = torch.tensor([0.3, 0.3, 0.3, 0.3, 0.3, 0.7]).view(1, 1, 1, 6)
    # 254.6 rounds to 255 (foreground), 0.4 to 0 (background); 128 and 1 are unknown.
    trimap = torch.tensor([0.0, 0.4, 128.0, 1.0, 254.6, 255.0]).view(1, 1, 1, 6)
    out = trimap_guided(alpha, trimap)
    assert out.flatten().tolist() == pytest.approx([0.0, 0.0, 0.3, 0.3, 1.0, 1.0])


def test_trimap_guided_gradient_only_in_unknown() -> None:
    alpha = torch.full((1, 1, 1, 3), 0.5, requires_grad=True)
    trimap = torch.tensor([0.0, 128.0, 255.0]).view(1, 1, 1, 3)
    trimap_guided(alpha, trimap).sum().backward()
    assert alpha.grad is not None
    assert alpha.grad.flatten().tolist() == [0.0, 1.0, 0.0]


def test_trimap_levels_and_shape_check() -> None:
    bg, fg = trimap_levels(torch.tensor([0.0, 100.0, 255.0]).view(1, 1, 1, 3))
    assert bg.flatten().tolist() == [True, False, False]
    assert fg.flatten().tolist() == [False, False, True]
    with pytest.raises(ValueError, match="trimap_guided"):
        trimap_guided(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))


def test_fuse_and_hybrid_trimap_take_the_first_maximum_as_argmax() -> None:
    from p3m_lightning.methods.p3m_net.inference import _trimap_levels
    from p3m_lightning.models.trimap_guided import fuse

    # Exact ties between every pair of classes and all three, and untied pixels.
    logits = torch.tensor(
        [[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 0.0, 3.0], [5.0, 5.0, 5.0], [0.0, 1.0, 7.0]]
    ).T.reshape(1, 3, 1, 5)
    argmax = logits.argmax(dim=1, keepdim=True)
    assert argmax.flatten().tolist() == [0, 1, 0, 0, 2]
    local = torch.full((1, 1, 1, 5), 0.25)
    expected = torch.where(argmax == 1, local, (argmax == 2).float())
    assert torch.equal(fuse(logits, local), expected)
    levels = _trimap_levels(logits)
    assert levels.flatten().tolist() == [0, 128, 0, 0, 255]
