"""System metrics of a training run, one sampler per node: MLflow's ``SystemMetricsMonitor`` on local rank 0.

    local rank 0 of each node -> NodeSystemMetrics(cfg.tracking, node_id=<node IP>, run_id=...).start()
        background thread: wait for the MLflow run id (rank 0: its Tracker's; other nodes: the run tagged
        tdn.train_run = <run key>, which rank 0 creates) -> SystemMetricsMonitor(run_id, interval, node_id)
        -> every tracking.system_metrics_interval_s: system/<node_id>/cpu_utilization_percentage,
           system/<node_id>/system_memory_usage_megabytes, .../network_*, .../disk_*, .../gpu_* (nvidia-ml-py)
    end of training -> stop(): the monitor's last values are flushed, at most ``timeout_s`` waited

Like the Tracker, it never blocks or fails training: every MLflow call happens on a daemon thread, a server
that is down only means fewer samples (MLflow's monitor stops when it cannot read the run), and ``stop()``
returns after its timeout whatever the network does. GPU figures need ``nvidia-ml-py`` (the ``gpu`` extra);
without it MLflow logs CPU, memory, disk and network only.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from tdn.tracking.mlflow_store import TRAIN_RUN_TAG, find_run_by_tag, tracking_client
from tdn.tracking.tracker import Tracker, TrackingConfig

log = logging.getLogger(__name__)

RUN_ID_POLL_S = 1.0  # how often the sampler looks for the run id until it has it


def find_train_run_id(uri: str, experiment: str, run_key: str) -> Callable[[], str | None]:
    """A lookup of the training run's id by its ``tdn.train_run`` tag (None until rank 0 created it)."""

    def lookup() -> str | None:
        client = tracking_client(uri)
        exp = client.get_experiment_by_name(experiment)
        found = find_run_by_tag(client, exp.experiment_id, TRAIN_RUN_TAG, run_key) if exp else None
        return found.info.run_id if found is not None else None

    return lookup


class NodeSystemMetrics:
    """MLflow's system-metrics sampler for this node, started once the run id is known. All methods return
    at once (``stop`` after at most ``timeout_s``)."""

    def __init__(self, cfg: TrackingConfig, node_id: str, run_id: Callable[[], str | None]) -> None:
        self.cfg = cfg
        self.node_id = node_id  # metric keys are system/<node_id>/<name>
        self._run_id = run_id  # returns the run id once it exists, else None; may raise (server down)
        self._stop = threading.Event()
        self._monitor: Any = None
        self._thread = threading.Thread(target=self._start_when_known, name="system-metrics", daemon=True)
        # one failed MLflow request must not take minutes (the Tracker's setting, also on non-zero ranks)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(cfg.request_timeout_s))

    def start(self) -> NodeSystemMetrics:
        self._thread.start()
        return self

    def _start_when_known(self) -> None:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        while not self._stop.is_set():
            try:
                run_id = self._run_id()
            except Exception as exc:  # noqa: BLE001 - the tracking server must never kill training
                log.debug("system metrics: run id not found yet: %s", exc)
                run_id = None
            if run_id:
                try:
                    monitor = SystemMetricsMonitor(
                        run_id,
                        sampling_interval=self.cfg.system_metrics_interval_s,
                        node_id=self.node_id,
                        tracking_uri=self.cfg.resolved_uri(),
                    )
                    monitor.start()
                    self._monitor = monitor
                except Exception as exc:  # noqa: BLE001 - no psutil, server gone: training goes on
                    log.warning("system metrics: not logged on %s: %s", self.node_id, exc)
                return
            self._stop.wait(RUN_ID_POLL_S)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop sampling and flush the last values (before the run is ended, so they are accepted)."""
        self._stop.set()
        self._thread.join(timeout=timeout_s)
        monitor, self._monitor = self._monitor, None  # a second stop() has nothing left to flush
        if monitor is None:
            return
        finisher = threading.Thread(target=monitor.finish, name="system-metrics-finish", daemon=True)
        finisher.start()
        finisher.join(timeout=timeout_s)


def start_node_sampler(
    cfg: TrackingConfig, run_key: str, local_rank: int, tracker: Tracker | None, node_id: str
) -> NodeSystemMetrics | None:
    """The sampler of this node, on its local rank 0 (None elsewhere, or when switched off). Rank 0 takes the
    run id from its Tracker; the other nodes find the run by its tag once rank 0 has created it."""
    if not cfg.enabled or not cfg.system_metrics or local_rank != 0:
        return None
    run_id: Callable[[], str | None] = (
        (lambda: tracker.run_id)
        if tracker is not None
        else find_train_run_id(cfg.resolved_uri(), cfg.experiment, run_key)
    )
    return NodeSystemMetrics(cfg, node_id, run_id).start()
