"""The test services never outlive the test process that started them (tests/orphan_guard.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.services import MlflowServer, wait_http

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
_CHILD = """
import sys, time
from pathlib import Path
from tests.services import MlflowServer
server = MlflowServer(Path(sys.argv[1])).start()
print(server.port, flush=True)
time.sleep(600)
"""


def test_a_killed_test_process_leaves_no_mlflow_server(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    port = int(child.stdout.readline())
    wait_http(f"http://127.0.0.1:{port}/health")
    child.send_signal(signal.SIGKILL)  # no cleanup code of the test process runs
    child.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            wait_http(f"http://127.0.0.1:{port}/health", timeout=1)
        except TimeoutError:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the mlflow server on port {port} outlived the killed test process")


def test_stop_ends_the_server_and_its_guard(tmp_path: Path) -> None:
    server = MlflowServer(tmp_path).start()
    assert server.proc is not None
    group = os.getpgid(server.proc.pid)
    server.stop()
    time.sleep(1.0)
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)
