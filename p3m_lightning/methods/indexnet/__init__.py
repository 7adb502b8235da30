"""IndexNet Matting (Lu et al., ICCV 2019): network with index pooling, loss.

Modules: ``network`` (the ``nn.Module``), ``loss`` (the training objective), ``blocks``,
``inference`` (``indexnet``: the official test procedure).
``ARCHITECTURE`` is the method's entry of the checkpoint allow-list
(``p3m_lightning.models.registry``): plain names and import paths, nothing is imported here.
"""

from p3m_lightning.models.architecture import Architecture

ARCHITECTURE = Architecture(
    "indexnet",
    "p3m_lightning.methods.indexnet.network:IndexNet",
    "indexnet",
    description="IndexNet Matting (ICCV 2019), MobileNetV2, trimap-based",
)
