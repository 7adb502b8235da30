"""GFM, Glance and Focus Matting (Li et al., IJCV 2022): network and test-time strategy."""

from p3m_lightning.models.gfm.inference import gfm_hybrid_alpha
from p3m_lightning.models.gfm.network import GFMNet, ResNet34, collaborative_matting

__all__ = ["GFMNet", "ResNet34", "collaborative_matting", "gfm_hybrid_alpha"]
