"""The ``mlflow server`` command line, built in one place for every server this project starts: the deployed
one (infra/mlflow/server.py), the local cluster's (infra/local/cluster.py), the tests' (tests/services.py) and
the scale benchmark's (benchmarks/scale.py).

    server = MlflowServerCommand(port=5000, backend_store_uri="sqlite:///srv/db", artifacts_destination="art")
    subprocess.Popen(server.argv(), env=server.env(os.environ))

Standard library only: the MLflow image (infra/mlflow/Dockerfile) copies this file beside its entrypoint.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

# Set for every server: without MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false, MLflow 3.17 starts a job runner
# beside the server, about 2.3 GiB instead of 0.5 GiB (../shared/notes/platform.md); nothing here uses it.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}


@dataclass(frozen=True)
class MlflowServerCommand:
    """What one ``mlflow server`` serves and where; ``argv()`` and ``env()`` start it."""

    port: int
    host: str = "127.0.0.1"  # 0.0.0.0 only where a Host allowlist guards it (the deployed server)
    workers: int = 1  # uvicorn worker processes
    # None: the server reads MLFLOW_BACKEND_STORE_URI from its environment. A store URI holding a password
    # stays there: on the command line `ps` and the pod spec would show it.
    backend_store_uri: str | None = None
    # Where the server stores artifacts (a folder or s3://...): clients on any node upload through the server
    # (mlflow-artifacts:/), so they need no credentials of their own. None: MLflow's default (./mlartifacts).
    artifacts_destination: str | None = None
    app_name: str | None = None  # "basic-auth": MLflow's users and permissions
    allowed_hosts: str | None = None  # Host header allowlist, comma-separated; None: MLflow's default
    cors_allowed_origins: str | None = None  # browser origins, comma-separated; None: MLflow's default
    python: str = sys.executable  # the interpreter whose mlflow runs the server

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    @property
    def uri(self) -> str:
        """The tracking URI a client on this machine uses."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def argv(self) -> list[str]:
        """``python -m mlflow server ...``; flags left out when their field is None."""
        optional = (
            ("--app-name", self.app_name),
            ("--backend-store-uri", self.backend_store_uri),
        )
        after = (
            ("--artifacts-destination", self.artifacts_destination),
            ("--allowed-hosts", self.allowed_hosts),
            ("--cors-allowed-origins", self.cors_allowed_origins),
        )
        return [
            self.python,
            "-m",
            "mlflow",
            "server",
            *_flags(optional),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--serve-artifacts",
            *_flags(after),
        ]

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` (the caller's environment) with SERVER_ENV set over it."""
        return {**base, **SERVER_ENV}


def _flags(pairs: tuple[tuple[str, str | None], ...]) -> list[str]:
    return [part for flag, value in pairs if value is not None for part in (flag, value)]
