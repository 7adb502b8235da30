"""BASIC, Background Matting (Sengupta et al., CVPR 2020): network on image + background
plate, loss, the official test procedure.

Modules: ``network`` (the ``nn.Module``), ``loss`` (the training objective), ``inference``
(the authors' single-image test procedure, strategy ``basic``).
``ARCHITECTURE`` is the method's entry of the checkpoint allow-list
(``p3m_lightning.models.registry``): plain names and import paths, nothing is imported here.
"""

from p3m_lightning.models.architecture import Architecture

ARCHITECTURE = Architecture(
    "basic",
    "p3m_lightning.methods.basic.network:BASICNet",
    "basic",
    description="BASIC, Background Matting (CVPR 2020), image + background plate",
)
