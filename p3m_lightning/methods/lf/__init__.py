"""LF, A Late Fusion CNN for Digital Matting (Zhang et al., CVPR 2019): network, loss.

Modules: ``network`` (the ``nn.Module``), ``loss`` (the training objective).
``ARCHITECTURE`` is the method's entry of the checkpoint allow-list
(``p3m_lightning.models.registry``): plain names and import paths, nothing is imported here.
"""

from p3m_lightning.models.architecture import Architecture

ARCHITECTURE = Architecture(
    "lf",
    "p3m_lightning.methods.lf.network:LFNet",
    "resize",
    description="LF, Late Fusion matting (CVPR 2019), DenseNet-201",
)
