"""GCA Matting (Li & Lu, AAAI 2020): network with guided contextual attention, loss.

Modules: ``network`` (the ``nn.Module``), ``loss`` (the training objective), ``blocks``,
``inference`` (``gca``: the official test procedure).
``ARCHITECTURE`` is the method's entry of the checkpoint allow-list
(``p3m_lightning.models.registry``): plain names and import paths, nothing is imported here.
"""

from p3m_lightning.models.architecture import Architecture

ARCHITECTURE = Architecture(
    "gca",
    "p3m_lightning.methods.gca.network:GCANet",
    "gca",
    description="GCA Matting (AAAI 2020), ResNet-34, trimap-based",
    not_exportable="guided contextual attention unfolds patches of the input size",
)
