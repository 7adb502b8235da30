"""p3m-lightning: privacy-preserving portrait matting (P3M-Net, P3M-10k, the PPT benchmark)."""

__version__ = "0.1.0"
