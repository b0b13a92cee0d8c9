"""The MLflow server as deployed (infra/mlflow/server.py): basic auth on, the admin password from the
environment, the Host allowlist enforced, users created through infra/mlflow/create_user.py's REST calls.
Runs the real entrypoint on 127.0.0.1 with sqlite stores in place of PostgreSQL.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from infra.local.processes import free_ports, spawn_detached, stop_session, wait_until
from infra.mlflow.create_user import UserApiError, create_user

ROOT = Path(__file__).resolve().parent.parent


def status(url: str, user: str | None = None, password: str | None = None, host: str | None = None) -> int:
    request = urllib.request.Request(url)
    if user is not None:
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        )
    if host is not None:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


@pytest.mark.integration
def test_deployed_server_requires_auth_enforces_hosts_and_creates_users(tmp_path: Path) -> None:
    pytest.importorskip("flask_wtf", reason="mlflow's basic-auth app needs Flask-WTF (mlflow[auth])")
    (port,) = free_ports(1)
    admin_password = secrets.token_hex(16)
    env = dict(os.environ)
    env.update(
        MLFLOW_BACKEND_STORE_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        MLFLOW_AUTH_DATABASE_URI=f"sqlite:///{tmp_path / 'auth.db'}",
        MLFLOW_AUTH_ADMIN_PASSWORD=admin_password,
        MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),
        MLFLOW_ARTIFACTS_DESTINATION=str(tmp_path / "artifacts"),
        MLFLOW_SERVER_ALLOWED_HOSTS=f"127.0.0.1:{port}",
        MLFLOW_SERVER_CORS_ALLOWED_ORIGINS=f"http://127.0.0.1:{port}",
        MLFLOW_HOST="127.0.0.1",
        MLFLOW_PORT=str(port),
        MLFLOW_WORKERS="1",
        TMPDIR=str(tmp_path),  # where a temporary basic_auth.ini would land
    )
    log = tmp_path / "server.log"
    pid = spawn_detached([sys.executable, "-m", "infra.mlflow.server"], log, env, ROOT)
    base = f"http://127.0.0.1:{port}"
    search = base + "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        assert wait_until(lambda: status(base + "/health") == 200, 300), log.read_text()[-3000:]
        assert status(search) == 401
        assert status(search, "admin", "not-the-password") == 401
        assert status(search, "admin", admin_password) == 200
        # A Host header outside the allowlist is refused even with valid credentials (DNS rebinding).
        assert status(search, "admin", admin_password, host="attacker.example") == 403

        user_password = secrets.token_hex(8)
        created = create_user(base, "admin", admin_password, "alice", user_password)
        assert created["username"] == "alice"
        assert status(search, "alice", user_password) == 200
        assert status(search, "alice", "wrong-password-123") == 401
        with pytest.raises(UserApiError, match="already exists|RESOURCE_ALREADY_EXISTS"):
            create_user(base, "admin", admin_password, "alice", user_password)
        # Only an admin may create users.
        with pytest.raises(UserApiError, match="HTTP 403"):
            create_user(base, "alice", user_password, "mallory", secrets.token_hex(8))
    finally:
        stop_session(pid)
    # The filled-in basic_auth.ini holds the auth database URI: it lived in memory, no file is left behind.
    assert not [p for p in tmp_path.rglob("*.ini")], sorted(tmp_path.rglob("*.ini"))
