"""GFM, Glance and Focus Matting (Li et al., IJCV 2022): network, loss, HYBRID test procedure.

Modules: ``network`` (the ``nn.Module``), ``loss`` (the training objective), ``inference``
(``gfm_hybrid``).
``ARCHITECTURE`` is the method's entry of the checkpoint allow-list
(``p3m_lightning.models.registry``): plain names and import paths, nothing is imported here.
"""

from p3m_lightning.models.architecture import Architecture

ARCHITECTURE = Architecture(
    "gfm",
    "p3m_lightning.methods.gfm.network:GFMNet",
    "gfm_hybrid",
    description="GFM, Glance and Focus Matting (IJCV 2022), ResNet-34",
    not_exportable="its PSP module's adaptive pooling needs the input size at export",
)
