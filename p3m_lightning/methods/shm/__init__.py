"""SHM, Semantic Human Matting (Chen et al., ACM MM 2018): T-Net + M-Net, loss.

Modules: ``network`` (the ``nn.Module``), ``loss`` (the training objective).
``ARCHITECTURE`` is the method's entry of the checkpoint allow-list
(``p3m_lightning.models.registry``): plain names and import paths, nothing is imported here.
"""

from p3m_lightning.models.architecture import Architecture

ARCHITECTURE = Architecture(
    "shm",
    "p3m_lightning.methods.shm.network:SHMNet",
    "resize",
    description="SHM, Semantic Human Matting (ACM MM 2018)",
    not_exportable="its PSP module's adaptive pooling needs the input size at export",
)
