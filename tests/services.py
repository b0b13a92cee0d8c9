"""Real services for tests: an ``mlflow server`` and an S3 endpoint (moto server mode), both on 127.0.0.1.

Each can be stopped and started again on the same port and store, which the resilience tests use to take
the tracking server away in the middle of a run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from infra.mlflow.command import MlflowServerCommand


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 90.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process serving {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except Exception as exc:  # noqa: BLE001 - retry until the deadline
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


class MlflowServer:
    """``mlflow server`` on a sqlite store, artifacts served through the server (mlflow-artifacts:/)."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MlflowServer:
        server = MlflowServerCommand(
            port=self.port,
            backend_store_uri=f"sqlite:///{self.root / 'mlflow.db'}",
            artifacts_destination=str(self.root / "artifacts"),
        )
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - closed with the process
        guard = [sys.executable, "-m", "tests.orphan_guard", str(os.getpid())]  # ends it if this process dies
        self.proc = subprocess.Popen(
            [*guard, *server.argv()],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server.env(os.environ),
            start_new_session=True,
        )
        wait_http(f"{self.uri}/health", proc=self.proc)
        return self

    def kill(self) -> None:
        """An outage as a crash: SIGKILL to the server's whole process group, over at once (``stop`` waits
        for a graceful shutdown, seconds on a loaded machine, in which a test's training runs on)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # The server forks workers: stop the whole process group it leads.
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class S3Server:
    """moto's S3-compatible HTTP server bound to 127.0.0.1 (never 0.0.0.0)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._server = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self) -> S3Server:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        wait_http(f"{self.endpoint}/moto-api/")
        return self

    def create_bucket(self, name: str) -> str:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1").create_bucket(Bucket=name)
        return f"s3://{name}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
