"""FBA Matting (Forte & Pitie, 2020) on the project's trimap-based model contract."""

from p3m_lightning.models.fba.network import FBANet, fba_fusion

__all__ = ["FBANet", "fba_fusion"]
