"""Files that are never seen half-written: write a temporary file beside the target, then rename.

A reader (another process, a resumed run, a user's viewer) sees either the old content of the
path or the whole new file, never a partial one, also when the writer is killed mid-write.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A hidden temporary path beside ``path``, renamed over ``path`` when the block succeeds.

    The parent folder is created if needed. On an exception the temporary file is deleted and
    ``path`` is left as it was. The name is unique per writer (process id and a random part), so
    concurrent writers of one path never share a temporary file.

    Yields:
        The temporary path to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, flushed to disk before the rename."""
    # "x": the umask applies (unlike mkstemp's 0600 files) and nothing is overwritten.
    with atomic_path(path) as tmp, open(tmp, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
