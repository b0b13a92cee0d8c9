"""A full disk is an input error: one line naming the path, the bytes needed and the bytes free.

    with full_disk_is_an_input_error(path, needed, partial=[files or folders to remove]):
        write ...                 OSError ENOSPC / EDQUOT -> the partial output removed -> DiskFullError

Retrying cannot help (the disk stays full), so training ends at once (DiskFullError is an InputError:
tdn/training/failures.py) and the jobs print the one line and exit 2 (jobs/cli.py).
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pipeline.errors import InputError

FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(InputError):
    """A write the disk (or the quota) could not take."""


def free_bytes(path: str) -> int | None:
    """Free bytes on the file system of ``path`` (its nearest existing folder); None when unknown (S3)."""
    probe = os.path.abspath(path)
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return None
        probe = parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def is_full_disk(exc: BaseException) -> bool:
    """ENOSPC / EDQUOT, also from pyarrow's file systems, which may say it without an errno."""
    if isinstance(exc, OSError) and exc.errno in FULL:
        return True
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text


def disk_full(path: str, needed: int, at_least: bool = False) -> DiskFullError:
    """``needed``: the bytes the write takes (``at_least``: the bytes it had written when the disk filled)."""
    free = free_bytes(path)
    free_text = f"{_size(free)} free" if free is not None else "free space unknown"
    amount = f"more than {_size(needed)}" if at_least else _size(needed)
    return DiskFullError(f"{path}: disk full: writing it needs {amount}, {free_text}")


def _remove(paths: Sequence[str]) -> None:
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)


@contextmanager
def full_disk_is_an_input_error(path: str, needed: int, partial: Sequence[str] = ()) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT inside the block into DiskFullError naming ``path``; ``partial`` is removed first."""
    try:
        yield
    except Exception as exc:
        if not is_full_disk(exc):
            raise
        _remove(partial)
        raise disk_full(path, needed) from exc
