"""Score a checkpoint on P3M-10k: ``python eval.py ckpt_path=<ckpt> [data=p3m10k] ...``.

With the published checkpoint, this reproduces the published numbers::

    python eval.py ckpt_path=p3mnet_pretrained_on_p3m10k.pth data=p3m10k \
        data.root=/path/to/P3M-10k

All options and their defaults: ``conf/eval.yaml``; the work is in ``p3m_lightning.evaluate``.
"""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="conf", config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Hydra entry point; exits with ``run``'s status (0 ok, 2 a configuration mistake)."""
    from p3m_lightning.evaluate import run

    sys.exit(run(cfg))


if __name__ == "__main__":
    main()
