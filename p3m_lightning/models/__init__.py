"""Plain ``nn.Module`` models: P3M-Net, its encoders, and checkpoint I/O."""

from p3m_lightning.models.bn_folding import fuse_conv_bn
from p3m_lightning.models.checkpoint import (
    CheckpointError,
    load_model,
    read_checkpoint,
    save_published,
    to_published,
)
from p3m_lightning.models.encoders import ResNet34MP, TimmEncoder, build_encoder
from p3m_lightning.models.p3mnet import OUTPUTS, P3MNet, P3MOutput, build_p3mnet, fuse

__all__ = [
    "OUTPUTS",
    "CheckpointError",
    "P3MNet",
    "P3MOutput",
    "ResNet34MP",
    "TimmEncoder",
    "build_encoder",
    "build_p3mnet",
    "fuse",
    "fuse_conv_bn",
    "load_model",
    "read_checkpoint",
    "save_published",
    "to_published",
]
