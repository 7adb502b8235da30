"""Matte your own photos: ``python predict.py ckpt_path=<ckpt> input=<file|dir|glob> output=<dir>``.

All options and their defaults: ``conf/predict.yaml``; the work is in ``p3m_lightning.predict``.
"""

import sys

import hydra
from omegaconf import DictConfig

from p3m_lightning.predict import predict


@hydra.main(config_path="conf", config_name="predict", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Hydra entry point; exits with ``predict``'s status (0 ok, 1 some failed, 2 usage)."""
    sys.exit(predict(cfg))


if __name__ == "__main__":
    main()
