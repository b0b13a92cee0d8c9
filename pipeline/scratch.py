"""Temporary files and folders that say whose they are, so that what a killed process left is removed later.

scratch_dir("model")        <tmp>/tdn-model-<host>-<pid>-<random>/   (the caller removes it when done)
scratch_file("download", suffix)   <tmp>/tdn-download-<host>-<pid>-<random><suffix>
remove_abandoned()          every <tmp>/tdn-<kind>-<host>-<pid>-... whose process is gone (this host) or
                            that is a day old (another host's, on a shared folder): the jobs call it
                            at start, so a kill -9 leaves nothing behind for long
attempt_tag() / is_stale(path, host, pid)   the same naming for other places (pipeline/shards/temp_files.py)
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import tempfile
import time

STALE_AFTER_S = 24 * 3600.0  # a temporary of another host is taken as abandoned after this
KINDS = ("model", "download", "replay", "train")  # what the project creates under <tmp>
_NAME = re.compile(r"^tdn-(?P<kind>[a-z]+)-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[0-9a-f]{6}")


def host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"


def attempt_tag() -> str:
    """``<host>-<pid>-<random>``: unique per process and call."""
    return f"{host_tag()}-{os.getpid()}-{secrets.token_hex(3)}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(path: str, host: str, pid: int) -> bool:
    """The process that made ``path`` is over: gone (this host), or the path is a day old (another host)."""
    if host == host_tag():
        return pid != os.getpid() and not _alive(pid)
    try:
        return time.time() - os.path.getmtime(path) > STALE_AFTER_S
    except FileNotFoundError:
        return False


def scratch_dir(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown scratch kind {kind!r}; known: {KINDS}")
    path = os.path.join(tempfile.gettempdir(), f"tdn-{kind}-{attempt_tag()}")
    os.makedirs(path)
    return path


def scratch_file(kind: str, suffix: str = "") -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown scratch kind {kind!r}; known: {KINDS}")
    fd, path = tempfile.mkstemp(prefix=f"tdn-{kind}-{attempt_tag()}-", suffix=suffix)
    os.close(fd)
    return path


def remove_abandoned(folder: str | None = None) -> list[str]:
    """Remove the scratch files and folders of processes that are over; returns their names."""
    folder = folder or tempfile.gettempdir()
    removed = []
    for name in os.listdir(folder):
        match = _NAME.match(name)
        if match is None or match["kind"] not in KINDS:
            continue
        path = os.path.join(folder, name)
        if not is_stale(path, match["host"], int(match["pid"])):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except FileNotFoundError:
                continue
        removed.append(name)
    return removed
