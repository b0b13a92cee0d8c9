"""Start the MLflow tracking server with basic auth, artifacts proxied to S3, and a Host/CORS allowlist.

The container entrypoint of infra/mlflow/Dockerfile (k8s and docker compose alike). Everything comes from the
environment, secrets from k8s Secrets:

    MLFLOW_BACKEND_STORE_URI        postgresql://mlflow:<password>@host:5432/mlflow   (secret)
    MLFLOW_AUTH_DATABASE_URI        the users/permissions database (may equal the backend store)  (secret)
    MLFLOW_AUTH_ADMIN_PASSWORD      first-start admin password (secret); MLFLOW_AUTH_ADMIN_USERNAME optional
    MLFLOW_FLASK_SERVER_SECRET_KEY  CSRF key, identical on every replica (secret)
    MLFLOW_ARTIFACTS_DESTINATION    e.g. s3://bucket/mlflow-artifacts (credentials: IRSA / instance profile)
    MLFLOW_SERVER_ALLOWED_HOSTS     Host header allowlist, e.g. mlflow.example.com,mlflow.tdn.svc.cluster.local:5000
    MLFLOW_SERVER_CORS_ALLOWED_ORIGINS  browser origins allowed, e.g. https://mlflow.example.com
    MLFLOW_HOST / MLFLOW_PORT / MLFLOW_WORKERS   bind address (default 0.0.0.0:5000), worker processes (4)

`python -m infra.mlflow.server --print` shows the command it would run, without starting anything.
"""

from __future__ import annotations

import argparse
import configparser
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from infra.mlflow.command import MlflowServerCommand

TEMPLATE = Path(__file__).with_name("basic_auth.ini")
REQUIRED = (
    "MLFLOW_BACKEND_STORE_URI",
    "MLFLOW_AUTH_DATABASE_URI",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
    "MLFLOW_ARTIFACTS_DESTINATION",
    "MLFLOW_SERVER_ALLOWED_HOSTS",
    "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS",
)


class ServerConfigError(ValueError):
    """The environment lacks a setting the server needs; the message names every missing one."""


def auth_config_text(database_uri: str, template: Path = TEMPLATE) -> str:
    """basic_auth.ini with `database_uri` filled in."""
    # No interpolation: a URL-encoded password contains '%', which ConfigParser would try to expand.
    config = configparser.ConfigParser(interpolation=None)
    config.read_string(template.read_text())
    config["mlflow"]["database_uri"] = database_uri
    if config["mlflow"].get("admin_password"):
        raise ServerConfigError(
            f"{template} sets admin_password: it must come from MLFLOW_AUTH_ADMIN_PASSWORD"
        )
    lines = []
    for key, value in config["mlflow"].items():
        lines.append(f"{key} = {value}")
    return "[mlflow]\n" + "\n".join(lines) + "\n"


def memory_file(text: str) -> str:
    """A path to ``text`` that no file on disk backs: an anonymous memory file (memfd) this process keeps open
    across ``exec`` into the server, read through ``/proc/<pid>/fd/<n>`` (a folder only its owner may read).
    It holds the auth database URI and vanishes with the server, however the server ends."""
    fd = os.memfd_create("basic_auth.ini", 0)  # no MFD_CLOEXEC: the exec'd server keeps it
    os.set_inheritable(fd, True)
    data = text.encode("utf-8")
    while data:
        data = data[os.write(fd, data) :]
    return f"/proc/{os.getpid()}/fd/{fd}"


def server_command(env: Mapping[str, str]) -> MlflowServerCommand:
    """The server this environment describes; raises ServerConfigError naming missing or malformed settings.

    The store URI is not passed: it stays in the environment (MLFLOW_BACKEND_STORE_URI is the flag's envvar),
    since a password on the command line would show in `ps` and in the pod spec.
    """
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        raise ServerConfigError(f"missing environment variables: {', '.join(missing)}")
    numbers = {}
    for name, default in (("MLFLOW_PORT", "5000"), ("MLFLOW_WORKERS", "4")):
        value = env.get(name, default)
        if not value.isdigit():
            raise ServerConfigError(f"{name} must be a whole number, got {value!r}")
        numbers[name] = int(value)
    try:
        return MlflowServerCommand(
            port=numbers["MLFLOW_PORT"],
            host=env.get("MLFLOW_HOST", "0.0.0.0"),
            workers=numbers["MLFLOW_WORKERS"],
            app_name="basic-auth",
            artifacts_destination=env["MLFLOW_ARTIFACTS_DESTINATION"],
            allowed_hosts=env["MLFLOW_SERVER_ALLOWED_HOSTS"],
            cors_allowed_origins=env["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"],
        )
    except ValueError as e:  # a port or worker count out of range
        raise ServerConfigError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.mlflow.server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--print", action="store_true", help="print the command instead of running it")
    args = parser.parse_args(argv)
    try:
        server = server_command(os.environ)
        ini = auth_config_text(os.environ["MLFLOW_AUTH_DATABASE_URI"])
    except ServerConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    argv_ = server.argv()
    if args.print:
        print(" ".join(argv_))
        return 0
    env = server.env(os.environ)
    env["MLFLOW_AUTH_CONFIG_PATH"] = memory_file(ini)
    os.execvpe(argv_[0], argv_, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
