"""Create an MLflow user on a basic-auth tracking server through its REST API.

    export MLFLOW_TRACKING_URI=https://mlflow.example.com
    export MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=...     # an admin account
    export TDN_NEW_USER_PASSWORD=...                                       # or you are prompted for it
    python -m infra.mlflow.create_user alice [--admin]

The new user's password is read from TDN_NEW_USER_PASSWORD or a prompt, never from the command line (which
shell history and `ps` would keep). Exit status 0 on success; the server's error message otherwise.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import sys
import urllib.error
import urllib.request


class UserApiError(RuntimeError):
    """The server refused a request; the message carries its status and answer."""


def _call(base_uri: str, method: str, path: str, body: dict, username: str, password: str) -> dict:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    request = urllib.request.Request(
        base_uri.rstrip("/") + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        raise UserApiError(
            f"{method} {path}: HTTP {e.code}: {e.read().decode(errors='replace')[:500]}"
        ) from e
    return json.loads(raw) if raw else {}


def create_user(
    base_uri: str, admin_user: str, admin_password: str, username: str, password: str, is_admin: bool = False
) -> dict:
    """POST /api/2.0/mlflow/users/create (and PATCH users/update-admin); returns the created user."""
    if not username or not password:
        raise UserApiError("username and password must be non-empty")
    answer = _call(
        base_uri,
        "POST",
        "/api/2.0/mlflow/users/create",
        {"username": username, "password": password},
        admin_user,
        admin_password,
    )
    if is_admin:
        _call(
            base_uri,
            "PATCH",
            "/api/2.0/mlflow/users/update-admin",
            {"username": username, "is_admin": True},
            admin_user,
            admin_password,
        )
    return answer.get("user", answer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.mlflow.create_user", description=__doc__.splitlines()[0]
    )
    parser.add_argument("username")
    parser.add_argument("--admin", action="store_true", help="make the new user an administrator")
    args = parser.parse_args(argv)
    missing = [
        k
        for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
        if not os.environ.get(k)
    ]
    if missing:
        print(f"error: set {', '.join(missing)} (the server and an admin account)", file=sys.stderr)
        return 2
    password = os.environ.get("TDN_NEW_USER_PASSWORD") or getpass.getpass(f"password for {args.username}: ")
    try:
        user = create_user(
            os.environ["MLFLOW_TRACKING_URI"],
            os.environ["MLFLOW_TRACKING_USERNAME"],
            os.environ["MLFLOW_TRACKING_PASSWORD"],
            args.username,
            password,
            args.admin,
        )
    except (UserApiError, urllib.error.URLError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"created user {user.get('username', args.username)} (admin: {args.admin})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
