"""AlphaGAN (Lutz et al., BMVC 2018): generator, PatchGAN discriminator, loss.

Modules: ``network`` (the ``nn.Module``), ``loss`` (the training objective).
``ARCHITECTURE`` is the method's entry of the checkpoint allow-list
(``p3m_lightning.models.registry``): plain names and import paths, nothing is imported here.
"""

from p3m_lightning.models.architecture import Architecture

ARCHITECTURE = Architecture(
    "alphagan",
    "p3m_lightning.methods.alphagan.network:AlphaGANGenerator",
    "trimap_guided",
    description="AlphaGAN generator (BMVC 2018), ResNet-50 + ASPP, trimap-based",
)
