"""MODNet (Ke et al., AAAI 2022): network, loss, the demo's test-time resizing.

Modules: ``network`` (the ``nn.Module``), ``loss`` (the training objective), ``inference``
(``modnet``).
``ARCHITECTURE`` is the method's entry of the checkpoint allow-list
(``p3m_lightning.models.registry``): plain names and import paths, nothing is imported here.
"""

from p3m_lightning.models.architecture import Architecture

ARCHITECTURE = Architecture(
    "modnet",
    "p3m_lightning.methods.modnet.network:MODNet",
    "modnet",
    description="MODNet (AAAI 2022), MobileNetV2",
)
