"""HAttMatting (Qiao et al., CVPR 2020): network, discriminator, loss.

Modules: ``network`` (the ``nn.Module``), ``loss`` (the training objective).
``ARCHITECTURE`` is the method's entry of the checkpoint allow-list
(``p3m_lightning.models.registry``): plain names and import paths, nothing is imported here.
"""

from p3m_lightning.models.architecture import Architecture

ARCHITECTURE = Architecture(
    "hatt",
    "p3m_lightning.methods.hatt.network:HATTNet",
    "resize",
    description="HATT, hierarchical attention matting (CVPR 2020), ResNeXt-101",
)
