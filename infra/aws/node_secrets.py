"""Fetch a Ray node's secrets from SSM Parameter Store into the files Ray and MLflow read, mode 0600.

Runs on each node of the AWS cluster (setup_commands in infra/aws/cluster.yaml) with the instance profile's
credentials, so no secret is ever written into a config file or a command line:

    <prefix>ray-auth-token   -> ~/.ray/auth_token          (Ray token auth, RAY_AUTH_MODE=token)
    <prefix>mlflow-username  -> ~/.mlflow/credentials      ([mlflow] mlflow_tracking_username / _password)
    <prefix>mlflow-password

Create them once with `aws ssm put-parameter --type SecureString` (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import configparser
import io
import os
import sys
from pathlib import Path


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created with 0600 from the start: never world-readable, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def mlflow_credentials_text(username: str, password: str) -> str:
    """The ~/.mlflow/credentials file MLflow's client reads when MLFLOW_TRACKING_USERNAME/PASSWORD are unset."""
    config = configparser.ConfigParser(interpolation=None)
    config["mlflow"] = {"mlflow_tracking_username": username, "mlflow_tracking_password": password}
    buf = io.StringIO()
    config.write(buf)
    return buf.getvalue()


def fetch_parameters(prefix: str, names: list[str], region: str) -> dict[str, str]:
    import boto3

    ssm = boto3.client("ssm", region_name=region)
    full = [prefix + name for name in names]
    answer = ssm.get_parameters(Names=full, WithDecryption=True)
    if answer.get("InvalidParameters"):
        raise SystemExit(f"SSM parameters not found in {region}: {', '.join(answer['InvalidParameters'])}")
    return {p["Name"][len(prefix) :]: p["Value"] for p in answer["Parameters"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.aws.node_secrets", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--region", required=True)
    parser.add_argument("--prefix", default="/tdn/", help="SSM parameter name prefix")
    parser.add_argument("--home", type=Path, default=Path.home())
    args = parser.parse_args(argv)
    values = fetch_parameters(
        args.prefix, ["ray-auth-token", "mlflow-username", "mlflow-password"], args.region
    )
    _write_private(args.home / ".ray" / "auth_token", values["ray-auth-token"].strip())
    _write_private(
        args.home / ".mlflow" / "credentials",
        mlflow_credentials_text(values["mlflow-username"], values["mlflow-password"]),
    )
    print(f"wrote {args.home / '.ray' / 'auth_token'} and {args.home / '.mlflow' / 'credentials'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
