"""MODNet (Ke et al., AAAI 2022): trimap-free portrait matting."""

from p3m_lightning.models.modnet.inference import modnet_alpha, modnet_size
from p3m_lightning.models.modnet.network import MobileNetV2, MODNet

__all__ = ["MODNet", "MobileNetV2", "modnet_alpha", "modnet_size"]
