"""The journal P3M-Nets (IJCV 2023): ViTAE-S and Swin-T encoders on P3M-Net's decoders.

Modules: ``network`` (the ``nn.Module``), the loss and test procedure
of P3M-Net, ``swin`` and ``vitae`` (the encoders), ``common``.
``ARCHITECTURE`` is the method's entry of the checkpoint allow-list
(``p3m_lightning.models.registry``): plain names and import paths, nothing is imported here.
"""

from p3m_lightning.models.architecture import Architecture

ARCHITECTURE = Architecture(
    "p3m_journal",
    "p3m_lightning.methods.p3m_journal.network:P3MJournalNet",
    {"name": "hybrid", "quantize": "floor"},
    published="p3m_lightning.methods.p3m_journal.network:drop_attention_masks",
    description="journal P3M-Net (IJCV 2023), ViTAE-S or Swin-T encoder",
    not_exportable="its Swin-T / ViTAE-S window and token reshapes are traced at one size",
)
