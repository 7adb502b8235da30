"""GCA-Matting (Li & Lu, AAAI 2020) on the project's trimap-based model contract."""

from p3m_lightning.models.gca.network import GCANet, trimap_one_hot

__all__ = ["GCANet", "trimap_one_hot"]
