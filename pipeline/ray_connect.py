"""Connecting a job to Ray: the cluster it was submitted to, an address given by the user, or a local one."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def init_ray(address: str | None = None, **kwargs) -> None:
    """Join the cluster named by ``address`` / RAY_ADDRESS (as ``ray job submit`` sets it), else start a local one.

    Reuses an existing connection, so library functions can be called from a driver that already ran
    ``ray.init`` (tests, notebooks).
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address.startswith("http"):
        # An http address is the job-submission endpoint, not something a driver can join.
        log.warning("RAY_ADDRESS=%s is a dashboard address; joining the local cluster instead", address)
        address = "auto"
    if not address:
        # "local" starts a private instance; None would silently join any other Ray running on this machine.
        address = "local"
    # Pass the environment through explicitly: quiet logs, same auth mode as the rest of this process.
    ray.init(address=address, log_to_driver=True, **kwargs)
    resources = ray.cluster_resources()
    log.info(
        "ray: %d node(s), %s CPU, %s GPU", len(ray.nodes()), resources.get("CPU", 0), resources.get("GPU", 0)
    )
