from p3m_lightning.models.shm.network import SHMNet

__all__ = ["SHMNet"]
