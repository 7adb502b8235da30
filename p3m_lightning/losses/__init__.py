"""Training objectives, one module per method: ``(outputs, batch) -> named loss terms``."""

from p3m_lightning.losses.p3m import (
    P3MLoss,
    alpha_loss,
    composition_loss,
    cross_entropy_loss,
    global_loss,
    laplacian_kernel,
    laplacian_loss,
    laplacian_pyramid,
    transition_alpha_loss,
    transition_mask,
    trimap_classes,
)

__all__ = [
    "P3MLoss",
    "alpha_loss",
    "composition_loss",
    "cross_entropy_loss",
    "global_loss",
    "laplacian_kernel",
    "laplacian_loss",
    "laplacian_pyramid",
    "transition_alpha_loss",
    "transition_mask",
    "trimap_classes",
]
