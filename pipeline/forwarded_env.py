"""What the driver forwards to Ray workers through ``runtime_env`` environment variables: never a secret.

    runtime_env(extra_env) -> {"env_vars": {...}} | {}   FORWARDED_ENV's values set here + extra_env, secrets
                                                          left out (shard job, training, evaluation replicas)
    forwardable(names) -> {name: value}   the driver's values of ``names`` that are set, secrets left out
    refuse_secrets(names, where)          ConfigError when a config asks to forward a secret

Ray writes a task's or actor's runtime environment, variables included, into world-readable files under its
session folder (``runtime_env_agent.log``, Ray Data's logs). So only endpoints, regions and switches travel that
way; credentials never do. Every node takes them from its own environment: the variables set where its raylet
starts, an instance profile or IRSA, or a 0600 file named by ``AWS_SHARED_CREDENTIALS_FILE`` or
``~/.mlflow/credentials`` (docs/cluster.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.config import ConfigError

# Values that grant access: never in a runtime_env, a remote argument or a log.
SECRET_ENV = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
    }
)

# What workers on other nodes need to reach the driver's S3 endpoint and tracking server: endpoints, regions,
# the AWS profile's name and MLflow's client settings. The one list: the shard job, training and evaluation
# forward it through runtime_env().
FORWARDED_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_DISABLE_TELEMETRY",
)


def refuse_secrets(names: Iterable[str], where: str) -> None:
    """A ConfigError naming the first secret in ``names`` (a config's list of variables to forward)."""
    for name in names:
        if name in SECRET_ENV:
            raise ConfigError(
                f"{where}: {name} is a secret and is never forwarded to Ray workers "
                "(nodes take credentials from their own environment; see docs/cluster.md)"
            )


def forwardable(names: Iterable[str]) -> dict[str, str]:
    """The driver's values of the set variables among ``names``, secrets left out."""
    return {k: os.environ[k] for k in names if k not in SECRET_ENV and k in os.environ}


def runtime_env(extra_env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A Ray ``runtime_env`` carrying the driver's set FORWARDED_ENV variables, updated with ``extra_env``
    (a job's own values, e.g. the tracking URI of its config); secrets dropped from both. ``{}`` (what Ray
    takes for no runtime_env) when nothing is to be forwarded."""
    env = forwardable(FORWARDED_ENV)
    env.update({k: v for k, v in (extra_env or {}).items() if k not in SECRET_ENV})
    return {"env_vars": env} if env else {}
