"""What the driver may forward to Ray workers through ``runtime_env`` environment variables: never a secret.

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
from collections.abc import Iterable

from pipeline.config import ConfigError

# Values that grant access: never in a runtime_env, a remote argument or a log.
SECRET_ENV = frozenset({
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
})  # fmt: skip


def refuse_secrets(names: Iterable[str], where: str) -> None:
    """A ConfigError naming the first secret in ``names`` (a config's list of variables to forward)."""
    for name in names:
        if name in SECRET_ENV:
            raise ConfigError(f"{where}: {name} is a secret and is never forwarded to Ray workers "
                              "(nodes take credentials from their own environment; see docs/cluster.md)")  # fmt: skip


def forwardable(names: Iterable[str]) -> dict[str, str]:
    """The driver's values of the set variables among ``names``, secrets left out."""
    return {k: os.environ[k] for k in names if k not in SECRET_ENV and k in os.environ}
