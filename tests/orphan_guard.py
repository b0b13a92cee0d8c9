"""``python -m tests.orphan_guard PARENT_PID COMMAND...``: run COMMAND, and end it when PARENT_PID is gone.

The test services (tests/services.py) start through it: a test process killed with SIGKILL (a timeout, a
CI runner stopping) cannot stop its ``mlflow server``, so the guard, polling its parent once a second, does.
The guard leads the process group the service runs in; SIGTERM/SIGINT to it are passed on to the service.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str]) -> int:
    parent, command = int(argv[0]), argv[1:]
    child = subprocess.Popen(command)  # in this guard's process group
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: child.send_signal(signum))
    while child.poll() is None:
        if not alive(parent):
            child.terminate()
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(os.getpgid(0), signal.SIGKILL)
            break
        time.sleep(1.0)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
