"""The journal P3M-Net family (IJCV 2023): ViTAE-S and Swin-T encoders, the network, loading."""

from p3m_lightning.models.p3m_journal.network import (
    ENCODERS,
    JournalDecoder,
    P3MJournalNet,
    load_published,
    published_state,
)
from p3m_lightning.models.p3m_journal.swin import SWIN_T, SwinEncoder
from p3m_lightning.models.p3m_journal.vitae import VITAE_S, ViTAEEncoder

__all__ = [
    "ENCODERS",
    "SWIN_T",
    "VITAE_S",
    "JournalDecoder",
    "P3MJournalNet",
    "SwinEncoder",
    "ViTAEEncoder",
    "load_published",
    "published_state",
]
