"""The job process's stderr, filtered below Python: what Ray's C++ core writes there straight to file descriptor
2 (the driver's own core worker: the "core_worker.cc ... E" max_restarts line of every Ray Data actor pool)
never passes through a Python logger, so the line filters of pipeline/ray_connect.py cannot see it.

    StderrFilter(keep).start()     fd 2 -> a pipe; a thread reads it line by line and writes ``keep(line)``
                                   (None: dropped) to the original stderr
    .stop()                        fd 2 back to the original; the pipe is drained first (also at exit)

Only a process that *is* the job installs it (jobs/cli.py: a job run from its own command line), never a
test or notebook calling a job's ``main(argv)``: it owns the process's file descriptors. Python's own
writes to ``sys.stderr`` take the same path in order. What Ray prints after ``stop`` (its shutdown at exit,
which runs after this module's exit hook) is not filtered.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable


class StderrFilter:
    """File descriptor 2 through a line filter (see the module docstring)."""

    def __init__(self, keep: Callable[[str], str | None]) -> None:
        self.keep = keep
        self._original = -1  # a duplicate of the stderr the process started with
        self._thread: threading.Thread | None = None

    @property
    def original_is_terminal(self) -> bool:
        return self._original >= 0 and os.isatty(self._original)

    def start(self) -> None:
        if self._thread is not None:
            return
        sys.stderr.flush()
        self._original = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(
            target=self._pump, args=(read_end,), name="stderr-filter", daemon=True
        )
        self._thread.start()
        atexit.register(self.stop)

    def stop(self) -> None:
        """fd 2 back to the original stderr; returns once the pipe is drained (at most 5 s)."""
        thread = self._thread
        if thread is None:
            return
        self._thread = None
        try:
            sys.stderr.flush()
        except (OSError, ValueError):  # closed at interpreter shutdown
            pass
        os.dup2(self._original, 2)  # the pipe's last write end closes: the reader sees the end of the stream
        thread.join(timeout=5.0)

    def _pump(self, read_end: int) -> None:
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for raw in lines:
                    self._write(raw.decode("utf-8", errors="replace"))
        if pending:
            self._write(pending.decode("utf-8", errors="replace"))

    def _write(self, line: str) -> None:
        kept = self.keep(line)
        if kept is None:
            return
        data = (kept + "\n").encode("utf-8", errors="replace")
        while data:
            try:
                written = os.write(self._original, data)
            except OSError:  # the original stderr is gone (a closed terminal): nothing left to show it on
                return
            data = data[written:]
