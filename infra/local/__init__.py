"""One-machine development cluster: `python -m infra.local up|down|env [--dir .local-cluster]`."""

from infra.local.cluster import (
    ClusterStartError,
    ClusterState,
    LocalClusterConfig,
    down,
    leftover_processes,
    read_env,
    up,
)

__all__ = [
    "ClusterStartError",
    "ClusterState",
    "LocalClusterConfig",
    "down",
    "leftover_processes",
    "read_env",
    "up",
]
