"""Loss pieces several methods share: ``terms`` (alpha, composition, Laplacian, cross-entropy,
trimap classes) and ``adversarial`` (the GAN terms of AlphaGAN and HATT). Each method's own
objective is ``p3m_lightning/methods/<method>/loss.py``: ``(outputs, batch) -> named terms``."""
