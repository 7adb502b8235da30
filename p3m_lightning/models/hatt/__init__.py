"""HAttMatting, Attention-Guided Hierarchical Structure Aggregation (Qiao et al., CVPR 2020)."""

from p3m_lightning.models.hatt.network import AlphaDiscriminator, HATTNet

__all__ = ["AlphaDiscriminator", "HATTNet"]
