"""Plain ``nn.Module`` models: P3M-Net and the benchmark's other methods, checkpoint I/O.

Importing this package registers the built-in architectures (``models.architectures``), the
allow-list checkpoints are rebuilt from.
"""

from p3m_lightning.models import architectures as _architectures  # noqa: F401  (registers)
from p3m_lightning.models.bn_folding import fuse_conv_bn
from p3m_lightning.models.checkpoint import (
    CheckpointError,
    LoadedModel,
    architecture_record,
    load_checkpoint,
    load_model,
    read_checkpoint,
    save_published,
    to_published,
)
from p3m_lightning.models.encoders import ResNet34MP, TimmEncoder, build_encoder
from p3m_lightning.models.p3mnet import OUTPUTS, P3MNet, P3MOutput, build_p3mnet, fuse
from p3m_lightning.models.registry import (
    ARCHITECTURES,
    Architecture,
    architecture_of,
    build_architecture,
    register_architecture,
)

__all__ = [
    "ARCHITECTURES",
    "OUTPUTS",
    "Architecture",
    "CheckpointError",
    "LoadedModel",
    "P3MNet",
    "P3MOutput",
    "ResNet34MP",
    "TimmEncoder",
    "architecture_of",
    "architecture_record",
    "build_architecture",
    "build_encoder",
    "build_p3mnet",
    "fuse",
    "fuse_conv_bn",
    "load_checkpoint",
    "load_model",
    "read_checkpoint",
    "register_architecture",
    "save_published",
    "to_published",
]
