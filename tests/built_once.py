"""``built_once``: what a session fixture builds into files, built once per ``make test`` run, however many
pytest-xdist workers ask for it (tests/tiers.py: each worker is its own session, so a session fixture that two
workers' files use is otherwise built twice). Only for files that are read-only once built: a service (a Ray
cluster, an MLflow server) stays each worker's own."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]) -> Path:
    """``build(folder)``'s result. Under xdist the first worker to ask takes a lock in the folder the run's
    workers share and builds; the others wait and read the path it recorded (a build that failed records
    nothing, and the next worker to ask starts it over in an emptied folder). Without xdist, a folder of this
    session's own."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent  # pytest-N/, whose popen-gwK/ are the workers' own
    folder, marker = shared / name, shared / f"{name}.built"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not marker.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            marker.write_text(str(build(folder)))
        return Path(marker.read_text())
