"""Deep Image Matting (Xu et al., CVPR 2017) on the project's trimap-based model contract."""

from p3m_lightning.models.dim.network import DIMNet

__all__ = ["DIMNet"]
