"""Continue a stopped run: requeue on the cluster's signal, resume from the run folder.

- `requeue_on_signal`: inside a submitit job (``hydra/launcher=slurm`` or ``local``), the
  signal submitit requeues on (SIGUSR2 by default; SLURM sends it ``signal_delay_s`` before the
  time limit, and on preemption where the cluster is set up to) first stops training the way
  SIGTERM does: at the end of the current batch, with ``checkpoints/interrupted.ckpt`` written
  (the ``on_exception`` callback). Only then is submitit's own handler called, which requeues
  the job (within ``max_num_timeout`` time-outs) and exits. Outside a submitit job, nothing
  changes.
- `resume_checkpoint`: a run started in a folder that already holds ``checkpoints/last.ckpt``
  or ``checkpoints/interrupted.ckpt`` (a requeued job runs in its own folder again; a rerun with
  ``hydra.run.dir=<run>``) continues from the one with the most optimiser steps, unless
  ``ckpt_path`` is set or neither holds a step.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from pytorch_lightning.utilities.exceptions import SIGTERMException

from p3m_lightning.models.safe_load import CheckpointError, read_checkpoint

log = logging.getLogger(__name__)

RESUMABLE = ("interrupted.ckpt", "last.ckpt")
"""Checkpoints of ``<run>/checkpoints/`` a run in that folder continues from."""


def _submitit_handler(handler: Any) -> bool:
    """Whether ``handler`` is one of submitit's job signal handlers."""
    try:
        from submitit.core.job_environment import SignalHandler
    except ImportError:
        return False
    return isinstance(getattr(handler, "__self__", None), SignalHandler)


def _requeue_signal() -> signal.Signals | None:
    """The signal submitit requeues this job on, or None outside a submitit job."""
    try:
        from submitit import JobEnvironment
    except ImportError:
        return None
    # SIGUSR2 unless SUBMITIT_PREEMPT_SIGNAL names another; the same lookup submitit makes.
    signum = JobEnvironment._usr_sig()
    return signum if _submitit_handler(signal.getsignal(signum)) else None


@contextmanager
def requeue_on_signal() -> Iterator[None]:
    """Within the block, submitit's requeue signal checkpoints the run before it requeues.

    The signal is turned into a SIGTERM to this process. While Lightning fits or tests, its
    SIGTERM handler stops at the end of the batch (DDP ranks follow rank zero), the
    ``on_exception`` callback writes ``interrupted.ckpt`` and `SIGTERMException` leaves the
    block; submitit's handler then requeues the job and exits. Outside Lightning's loops (data
    preparation, between fit and test) there is nothing to checkpoint: submitit's handler runs
    at once. A no-op outside a submitit job.

    Raises:
        SystemExit: the job is requeued (submitit exits), or a plain SIGTERM stopped the run.
        submitit.core.utils.UncompletedJobError: submitit refuses to requeue (timed out more
            than ``max_num_timeout`` times); the job ends as failed with that reason.
    """
    signum = _requeue_signal()
    if signum is None:
        yield
        return
    requeue = signal.getsignal(signum)
    received: list[FrameType | None] = []

    def stop(sig: int, frame: FrameType | None) -> None:
        received.append(frame)
        if _submitit_handler(signal.getsignal(signal.SIGTERM)):
            log.warning("%s: not training, requeueing the job now", signal.Signals(sig).name)
            requeue(sig, frame)
            return
        log.warning(
            "%s: stopping at the end of this batch, writing checkpoints/interrupted.ckpt, then "
            "requeueing the job",
            signal.Signals(sig).name,
        )
        signal.raise_signal(signal.SIGTERM)

    signal.signal(signum, stop)
    try:
        yield
    except SIGTERMException:
        if received:
            requeue(signum, received[0])
        raise
    finally:
        signal.signal(signum, requeue)


def resume_checkpoint(output_dir: Path) -> dict[str, Any] | None:
    """Where a run in ``output_dir`` continues from, or None to start afresh.

    Of ``checkpoints/interrupted.ckpt`` and ``checkpoints/last.ckpt``, the readable one with the
    most optimiser steps; ``last.ckpt`` on a tie (it was written later, at the epoch's end). A
    file that cannot be read (cut off by a kill) is skipped with a warning; one without a
    single optimiser step (a run stopped before training) holds nothing to resume.

    Returns:
        ``{"checkpoint": path, "global_step": steps}`` (``last.ckpt`` is overwritten as the run
        goes on: the step says where it resumed), or None.
    """
    found: dict[str, int] = {}
    for name in RESUMABLE:
        path = output_dir / "checkpoints" / name
        if not path.is_file():
            continue
        try:
            found[str(path)] = int(read_checkpoint(path).get("global_step", 0))
        except CheckpointError as err:
            log.warning("not resuming from %s: %s", path, err)
    if not any(found.values()):
        return None
    path = max(found, key=lambda p: (found[p], p.endswith("last.ckpt")))
    log.warning(
        "resuming from %s (step %d): the run folder already holds a checkpoint (a requeued job "
        "or a rerun); start in a new folder to train afresh",
        path,
        found[path],
    )
    return {"checkpoint": path, "global_step": found[path]}
