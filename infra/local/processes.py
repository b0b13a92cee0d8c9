"""Start detached services in their own sessions and stop exactly those sessions again (Linux /proc)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ask the kernel for `count` distinct free TCP ports (all sockets held open together, so no duplicates)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def spawn_detached(argv: Sequence[str], log_path: Path, env: Mapping[str, str], cwd: Path) -> int:
    """Start `argv` as the leader of a new session; its output goes to `log_path`. Returns the pid.

    A new session (setsid) means every process the service forks, daemons included, carries this pid as its
    session id, which is how `stop_sessions` later finds them all without touching anyone else's processes.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=str(cwd),
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def _stat_fields(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, session id) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after its last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return rest[0], int(rest[1]), int(rest[3])


def is_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def session_members(session_ids: Iterable[int]) -> list[int]:
    """Live (non-zombie) pids whose session id is one of `session_ids`."""
    wanted = set(session_ids)
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None and fields[2] in wanted and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def _reap(pid: int) -> None:
    # Our own children turn into zombies when they exit; collect them so they do not count as alive.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll `predicate` until it is true or `timeout_s` passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def stop_session(leader: int, grace_s: float = 15.0) -> None:
    """SIGTERM the session leader, give it `grace_s` to shut its children down, then SIGKILL the session.

    Only the leader gets SIGTERM: `ray start --block` then stops its own daemons in order, whereas signalling
    every member at once leaves raylet and GCS waiting on each other.
    """
    try:
        os.kill(leader, signal.SIGTERM)
    except ProcessLookupError:
        pass

    def leader_gone() -> bool:
        _reap(leader)
        return not is_alive(leader)

    wait_until(leader_gone, grace_s)
    kill_sessions([leader])


def kill_sessions(session_ids: Iterable[int], timeout_s: float = 10.0) -> None:
    """SIGKILL every member of the given sessions and wait until none is left."""
    ids = list(session_ids)

    def all_gone() -> bool:
        members = session_members(ids)
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _reap(pid)
        for pid in ids:
            _reap(pid)
        return not members

    if not wait_until(all_gone, timeout_s):
        left = session_members(ids)
        raise RuntimeError(f"processes {left} of sessions {ids} survived SIGKILL for {timeout_s} s")


def log_tail(path: str, lines: int = 30) -> str:
    """The last ``lines`` lines of a service's log, for an error message."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
