"""SHM loss terms on inputs whose values can be worked out by hand."""

import math

import torch

from p3m_lightning.methods.shm.loss import SHMLoss


def _batch() -> dict[str, torch.Tensor]:
    b, h, w = 1, 2, 2
    return {
        "image": torch.zeros(b, 3, h, w),
        "fg": torch.ones(b, 3, h, w),
        "bg": torch.zeros(b, 3, h, w),
        "alpha": torch.zeros(b, 1, h, w),
        "trimap": torch.zeros(b, 1, h, w),  # all background: class 0
    }


def test_shm_loss_terms_by_hand() -> None:
    # pred 0.5 everywhere: |0.5 - 0| = 0.5 alpha error; composite 0.5 on 3 channels vs image 0
    # -> comp = 3 * 0.5 = 1.5; uniform logits -> CE = ln 3.
    outputs = {"alpha": torch.full((1, 1, 2, 2), 0.5), "trimap_logits": torch.zeros(1, 3, 2, 2)}
    terms = SHMLoss(gamma=0.5, lam=0.01)(outputs, _batch())
    assert math.isclose(terms["loss_alpha"].item(), 0.5, rel_tol=1e-5)
    assert math.isclose(terms["loss_comp"].item(), 1.5, rel_tol=1e-5)
    assert math.isclose(terms["loss_trimap"].item(), math.log(3), rel_tol=1e-5)
    expected = 0.5 * 0.5 + 0.5 * 1.5 + 0.01 * math.log(3)
    assert math.isclose(terms["loss"].item(), expected, rel_tol=1e-5)
