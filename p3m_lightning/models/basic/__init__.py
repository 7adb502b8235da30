"""BASIC, Background Matting (Sengupta et al., CVPR 2020) on the background-based contract."""

from p3m_lightning.models.basic.network import BASICNet, plate_segmentation

__all__ = ["BASICNet", "plate_segmentation"]
