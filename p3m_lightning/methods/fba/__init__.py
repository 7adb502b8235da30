"""FBA Matting (Forte & Pitie, 2020): network predicting alpha, F and B, loss.

Modules: ``network`` (the ``nn.Module``), ``loss`` (the training objective), ``blocks``,
``inference`` (``fba``: the official test procedure).
``ARCHITECTURE`` is the method's entry of the checkpoint allow-list
(``p3m_lightning.models.registry``): plain names and import paths, nothing is imported here.
"""

from p3m_lightning.models.architecture import Architecture

ARCHITECTURE = Architecture(
    "fba",
    "p3m_lightning.methods.fba.network:FBANet",
    "fba",
    description="FBA Matting (2020), ResNet-50 GN+WS, trimap-based",
    not_exportable="aten::cummax (its trimap distance transform) has no ONNX operator",
)
