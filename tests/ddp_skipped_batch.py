"""Two CPU DDP processes (gloo) train the matting task; every batch of rank 1 is all skipped.

Run by ``tests/test_ddp_skipped_batch.py``::

    python tests/ddp_skipped_batch.py OUT_DIR

Lightning starts rank 1 by running this command again. Samples 1 and 3 are ``privacy ==
"skipped"``. Step 1 gives rank 0 sample 0 and rank 1 sample 1 (all skipped), step 2 rank 0
sample 3 (all skipped) and rank 1 sample 2, one step of plain SGD each. Each process writes
``OUT_DIR/rank<r>.pt``: its global step and the parameters and buffers it ended with; rank 0
also the references taken in this process: SGD at half the learning rate on samples 0 then 2
(what DDP must give if the skipped batches add zero gradients), and the buffers after sample 0
alone. (SyncBatchNorm needs GPUs; on the CPU each process keeps its own batch statistics.)
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from p3m_lightning.methods.p3m_net.network import P3MNet
from p3m_lightning.task import MattingTask

SIZE = 64
ORDER = ([0, 3], [1, 2])
"""The samples of rank 0 and of rank 1, in step order."""
LR = 0.5
"""A power of two: the DDP update ``LR * (g + 0) / 2`` and the reference ``(LR / 2) * g``
round alike."""


class Crops(Dataset):
    """Four training crops; the odd ones were skipped by the privacy policy."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.items = []
        for i in range(4):
            alpha = torch.zeros(1, SIZE, SIZE)
            alpha[:, SIZE // 4 : 3 * SIZE // 4, SIZE // 4 : 3 * SIZE // 4] = 1.0
            trimap = alpha * 255
            trimap[:, SIZE // 4 - 3 : SIZE // 4 + 3] = 128
            self.items.append(
                {
                    "image": torch.randn(3, SIZE, SIZE, generator=gen),
                    "alpha": alpha,
                    "trimap": trimap,
                    "fg": torch.randn(3, SIZE, SIZE, generator=gen),
                    "bg": torch.randn(3, SIZE, SIZE, generator=gen),
                    "name": f"crop_{i}",
                    "privacy": "skipped" if i % 2 else "mask",
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


class RankSamples(Sampler):
    """This process's samples of `ORDER` (the rank is known once the process group is up)."""

    def __init__(self, trainer: pl.Trainer) -> None:
        self.trainer = trainer

    def __iter__(self):
        return iter(ORDER[self.trainer.global_rank])

    def __len__(self) -> int:
        return len(ORDER[0])


def new_task() -> MattingTask:
    """The task with seeded weights and plain SGD (the update is then linear in the gradient)."""
    torch.manual_seed(0)
    return MattingTask(P3MNet(), optimizer=partial(torch.optim.SGD, lr=LR))


def weights(task: MattingTask) -> dict[str, dict[str, torch.Tensor]]:
    """Copies of the network's parameters and buffers."""
    return {
        "params": {k: v.detach().clone() for k, v in task.net.named_parameters()},
        "buffers": {k: v.detach().clone() for k, v in task.net.named_buffers()},
    }


def reference(dataset: Crops, indices: list[int], lr: float) -> dict[str, dict[str, torch.Tensor]]:
    """The weights after SGD steps (``lr``) on ``indices``, one sample per step."""
    task = new_task()
    task.train()
    optimizer = torch.optim.SGD(task.parameters(), lr=lr)
    for index in indices:
        batch = torch.utils.data.default_collate([dataset[index]])
        out = task.net(batch["image"])
        loss = task.loss(out, batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return weights(task)


def main(out: Path) -> None:
    """Train on two processes and write what each ended with."""
    dataset = Crops()
    task = new_task()
    trainer = pl.Trainer(
        accelerator="cpu",
        strategy="ddp",
        devices=2,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        use_distributed_sampler=False,
    )
    loader = DataLoader(dataset, batch_size=1, sampler=RankSamples(trainer))
    trainer.fit(task, train_dataloaders=loader)
    result = {"global_step": trainer.global_step, **weights(task)}
    if trainer.global_rank == 0:
        result["reference"] = reference(dataset, [0, 2], LR / 2)
        result["after_sample_0"] = reference(dataset, [0], LR / 2)
    torch.save(result, out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
