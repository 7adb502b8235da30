"""AlphaGAN (Lutz et al., BMVC 2018): generator and PatchGAN discriminator."""

from p3m_lightning.models.alphagan.network import AlphaGANGenerator, PatchDiscriminator

__all__ = ["AlphaGANGenerator", "PatchDiscriminator"]
