"""P3M-Net (Li, Ma, Zhang, Tao, ACM MM 2021): network, loss, HYBRID test procedure, the
published checkpoint format.

Modules: ``network`` (the ``nn.Module``), ``blocks`` (TFI, sBFI, dBFI), ``loss`` (the training
objective), ``inference`` (``hybrid``), ``published`` (the released checkpoint's names).
``ARCHITECTURE`` is the method's entry of the checkpoint allow-list
(``p3m_lightning.models.registry``): plain names and import paths, nothing is imported here.
"""

from p3m_lightning.models.architecture import Architecture

ARCHITECTURE = Architecture(
    "p3m_net",
    "p3m_lightning.methods.p3m_net.network:P3MNet",
    "resize",
    photo_strategy="hybrid",
    builder="p3m_lightning.methods.p3m_net.network:build_p3mnet",
    published="p3m_lightning.methods.p3m_net.published:from_published",
    channels_last=True,
    description="P3M-Net (ACM MM 2021), ResNet-34-mp or timm encoder",
)
