"""Deep Image Matting (Xu et al., CVPR 2017): trimap-based network, loss.

Modules: ``network`` (the ``nn.Module``), ``loss`` (the training objective).
``ARCHITECTURE`` is the method's entry of the checkpoint allow-list
(``p3m_lightning.models.registry``): plain names and import paths, nothing is imported here.
"""

from p3m_lightning.models.architecture import Architecture

ARCHITECTURE = Architecture(
    "dim",
    "p3m_lightning.methods.dim.network:DIMNet",
    # mmagic pads like the generic strategy and rounds its 8-bit matte.
    {"name": "trimap_guided", "quantize": "round"},
    description="DIM, Deep Image Matting (CVPR 2017), VGG-16, trimap-based",
)
