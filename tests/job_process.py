"""A job run as its own process (``python -m jobs.<name> ...``), its output read as it comes: for tests that
signal or kill it, or a process of its, at a moment its output names; ``assert_quiet`` for a job that ended
well (issue 25: what a user reads when the output goes to a pipe or a log file)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from pipeline import ray_noise

REPO = Path(__file__).resolve().parent.parent
WORKER_PID = re.compile(r"\((?:RayTrainWorker|RayTrainWorker\w*) pid=(\d+)")
COLOUR = re.compile(r"\x1b\[")


class JobProcess:
    """``python -m jobs.<job> args`` in the repository; stdout and stderr merged into ``lines``."""

    def __init__(self, job: str, args: list[str], env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        full_env.pop("RAY_ADDRESS", None)
        self.command = [sys.executable, "-m", f"jobs.{job}", *args]
        self.proc = subprocess.Popen(
            self.command,
            cwd=REPO,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: a test never signals itself
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 600.0) -> re.Match[str]:
        """The first output line matching ``pattern`` (regex), waiting for it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                match = regex.search(line)
                if match:
                    return match
            seen = len(self.lines)
            if self.proc.poll() is not None and seen == len(self.lines):
                self._reader.join(timeout=5)
                if not any(regex.search(line) for line in self.lines):
                    raise AssertionError(
                        f"exited {self.proc.returncode} before {pattern!r}:\n{self.output[-5000:]}"
                    )
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.output[-5000:]}")

    def worker_pid(self, pattern: str) -> int:
        """The pid of the Ray Train worker that printed the line matching ``pattern``."""
        line = self.wait_for(pattern).string
        match = WORKER_PID.search(line)
        assert match, f"no worker pid in {line!r}"
        return int(match.group(1))

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 900.0) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def worker_pid_from_logs(session_dir: str, pattern: str, since: float, timeout: float = 600.0) -> int:
    """The pid of the Ray worker whose own log file (``<session>/logs/worker-*-<pid>.out``, written as it
    prints) has a line matching ``pattern``, among files written after ``since``: unlike the driver's copy of
    the line, which Ray's log monitor forwards seconds late on a loaded machine, it is there at once."""
    regex = re.compile(pattern)
    logs = Path(session_dir) / "logs"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in logs.glob("worker-*.out"):
            try:
                if path.stat().st_mtime < since or not regex.search(path.read_text(errors="replace")):
                    continue
            except FileNotFoundError:
                continue
            return int(path.stem.rsplit("-", 1)[1])
        time.sleep(0.05)
    raise AssertionError(f"no worker log in {logs} matched {pattern!r} within {timeout} s")


def assert_quiet(job: JobProcess, name: str) -> None:
    """``job`` (``python -m jobs.<name>``, stdout and stderr to a pipe, not a terminal) exits 0 and its output
    holds no line of a known-harmless Ray pattern (pipeline/ray_noise.py, what ``--verbose`` brings back), no
    colour code, no traceback, and ends with the job's summary (``<name>: done: ...``)."""
    assert job.finish() == 0, job.output[-5000:]
    noise = [line for line in job.lines if ray_noise.match(line) is not None]
    assert not noise, f"{name}: known-harmless lines on the console:\n" + "\n".join(noise[:10])
    coloured = [line for line in job.lines if COLOUR.search(line)]
    assert not coloured, f"{name}: colour codes off a terminal:\n" + "\n".join(coloured[:10])
    assert "Traceback" not in job.output, job.output[-5000:]
    assert any(line.startswith(f"{name}: done: ") for line in job.lines), f"{name}: no summary:\n{job.output}"
