"""IndexNet Matting (Lu et al., ICCV 2019) on the project's trimap-based model contract."""

from p3m_lightning.models.indexnet.network import IndexNet

__all__ = ["IndexNet"]
