"""LF, A Late Fusion CNN for Digital Matting (Zhang et al., CVPR 2019)."""

from p3m_lightning.models.lf.network import LFNet, late_fusion

__all__ = ["LFNet", "late_fusion"]
