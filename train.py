"""Train P3M-Net: ``python train.py [experiment=ppt_bb] [data=...] [trainer=...] ...``."""

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Hydra entry point; the logic lives in ``p3m_lightning.train``."""
    from p3m_lightning.train import train

    train(cfg)


if __name__ == "__main__":
    main()
