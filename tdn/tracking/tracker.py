"""MLflow tracking from rank 0 that never stops training when the tracking server goes away.

Every call (params, metrics, tags, artifacts, model registration) is queued and sent by one background thread
through ``MlflowClient``. A failed call stays at the head of the queue and is retried with exponential backoff
(capped), so calls arrive in order once the server is back; metrics queued meanwhile are merged into batches.
The training thread only appends to a queue: it never waits on the network, except in ``close()``, which
gives the queue ``flush_timeout_s`` to drain and then warns about what it had to drop.

HTTP retries inside MLflow are turned down (MLFLOW_HTTP_REQUEST_MAX_RETRIES / _TIMEOUT, unless set already)
so one call fails within seconds instead of minutes and the backoff here decides what happens next.

The run is found again by its tag ``tdn.train_run`` (the Ray run name): a worker restarted after a failure
logs into the same MLflow run instead of opening a new one. Clients, experiments and tag names come from
tdn/tracking/mlflow_store.py.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tdn.tracking.mlflow_store import (
    METRICS_PER_BATCH,
    PARAM_VALUE_LIMIT,
    PARAMS_PER_BATCH,
    TRAIN_RUN_TAG,
    find_run_by_tag,
    get_or_create_experiment,
    make_sqlite_folder,
    resolve_tracking_uri,
    tracking_client,
)

log = logging.getLogger(__name__)


@dataclass
class TrackingConfig:
    """Where and what to log. ``uri`` empty = MLFLOW_TRACKING_URI, else ``sqlite:///mlruns/mlflow.db``."""

    enabled: bool = True
    uri: str = ""
    experiment: str = "tdn-train"
    registered_model: str = "tdn"  # empty = do not register the final model
    registered_alias: str = ""  # e.g. "champion"; empty = no alias
    log_every_steps: int = 20
    request_timeout_s: int = 10
    max_backoff_s: float = 30.0
    flush_timeout_s: float = 120.0

    def resolved_uri(self) -> str:
        """The URI to use, with a relative sqlite path made absolute (Ray workers run in another folder)."""
        return resolve_tracking_uri(self.uri)


Call = Callable[[Any, str], Any]  # (MlflowClient, run_id) -> anything


def _is_permanent(exc: Exception) -> bool:
    """An answer from the store/server that will not change on retry (HTTP 4xx other than 429)."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return False  # connection refused, timeouts: the server may come back
    code = exc.get_http_status_code()
    return exc.error_code in _PERMANENT or (400 <= code < 500 and code != 429)


_PERMANENT = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST",
              "INVALID_STATE", "PERMISSION_DENIED"}


class Tracker:
    """Queued, retried MLflow logging for one training run. Use only on rank 0; all methods return at once."""

    def __init__(self, cfg: TrackingConfig, run_key: str, run_name: str | None = None) -> None:
        self.cfg = cfg
        self.uri = cfg.resolved_uri()
        self.run_key = run_key
        self.run_name = run_name or run_key
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.dropped = 0
        self.failures = 0  # failed attempts so far (a test and the logs read this)
        self.rejected = 0  # calls the server refused (4xx): dropped at once, never retried
        self._queue: deque[tuple[str, Call | dict]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = float("inf")  # set by close(): when the sender stops retrying
        self._outage_since: float | None = None
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(cfg.request_timeout_s))
        make_sqlite_folder(self.uri)
        # Import mlflow fully before the worker thread starts: importing it from two threads at once races
        # in protobuf's descriptor pool ("Depends on file 'databricks.proto', but it has not been loaded").
        import mlflow  # noqa: F401
        import mlflow.entities  # noqa: F401

        self._thread = threading.Thread(target=self._worker, name="mlflow-tracker", daemon=True)
        self._thread.start()

    # ---- producer side (training thread) ----
    def _put(self, kind: str, item: Call | dict) -> None:
        with self._cond:
            if kind == "metrics" and len(self._queue) > 1 and self._queue[-1][0] == "metrics":
                # merge consecutive metric batches: one request instead of many after an outage (never into
                # the head, which the sender may be reading right now)
                last = self._queue[-1][1]
                assert isinstance(last, dict) and isinstance(item, dict)
                last.setdefault("items", []).extend(item["items"])
            else:
                self._queue.append((kind, item))
            self._cond.notify()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        stamp = int(time.time() * 1000)
        items = [(k, float(v), stamp, int(step)) for k, v in metrics.items()]
        self._put("metrics", {"items": items})

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        # MLflow caps a value at 6000 characters; lists of class names can be longer.
        plist = [Param(k, str(v)[:PARAM_VALUE_LIMIT]) for k, v in params.items()]

        def call(client: Any, run_id: str) -> None:
            for i in range(0, len(plist), PARAMS_PER_BATCH):
                try:
                    client.log_batch(run_id, params=plist[i : i + PARAMS_PER_BATCH])
                except Exception as exc:  # noqa: BLE001
                    # a resumed run logs the same params again; MLflow rejects only *changed* values
                    if "INVALID_PARAMETER_VALUE" not in str(exc):
                        raise
                    log.warning("mlflow: some params were not (re)logged: %s", str(exc)[:300])

        self._put("call", call)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        tlist = [RunTag(k, str(v)) for k, v in tags.items()]
        self._put("call", lambda client, run_id: client.log_batch(run_id, tags=tlist))

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        """The file must stay in place until ``close()`` (it is uploaded from the background thread)."""
        self._put("call", lambda client, run_id: client.log_artifact(run_id, local_path, artifact_path))

    def call(self, fn: Call) -> None:
        """Queue any ``fn(client, run_id)``, retried like the rest (e.g. model registration)."""
        self._put("call", fn)

    # ---- consumer side (background thread) ----
    def _open_run(self, client: Any) -> str:
        self.experiment_id = get_or_create_experiment(client, self.cfg.experiment)
        found = find_run_by_tag(client, self.experiment_id, TRAIN_RUN_TAG, self.run_key)
        if found is not None:
            run_id = found.info.run_id
            if found.info.status != "RUNNING":
                client.update_run(run_id, status="RUNNING")
            log.info("mlflow: continuing run %s (%s)", run_id, self.run_key)
            return run_id
        tags = {TRAIN_RUN_TAG: self.run_key}
        run = client.create_run(self.experiment_id, run_name=self.run_name, tags=tags)
        log.info("mlflow: run %s in experiment %s at %s", run.info.run_id, self.cfg.experiment, self.uri)
        return run.info.run_id

    def _send(self, client: Any, run_id: str, item: Call | dict) -> None:
        if isinstance(item, dict):  # a "metrics" batch
            from mlflow.entities import Metric

            metrics = [Metric(k, v, ts, step) for k, v, ts, step in item["items"]]
            for i in range(0, len(metrics), METRICS_PER_BATCH):
                client.log_batch(run_id, metrics=metrics[i : i + METRICS_PER_BATCH])
        else:
            item(client, run_id)

    def _worker(self) -> None:
        client = tracking_client(self.uri)
        backoff = 1.0
        while True:
            with self._cond:
                while not self._queue and not self._closing and self.run_id is not None:
                    self._cond.wait()
                if not self._queue and (self._closing or self.run_id is not None):
                    return
                head = self._queue[0] if self._queue else None
            try:
                if self.run_id is None:
                    self.run_id = self._open_run(client)
                if head is not None:
                    self._send(client, self.run_id, head[1])
                    with self._cond:
                        self._queue.popleft()
                if self._outage_since is not None:
                    log.warning("mlflow: %s reachable again after %.0f s; sending %d queued call(s)",
                                self.uri, time.monotonic() - self._outage_since, len(self._queue))
                    self._outage_since = None
                backoff = 1.0
            except Exception as exc:  # noqa: BLE001 - the tracking server must never kill training
                self.failures += 1
                if head is not None and self.run_id is not None and _is_permanent(exc):
                    # the server answered "no" (bad value, missing resource): retrying cannot help
                    log.warning("mlflow: call rejected by %s, skipped: %s", self.uri, str(exc)[:300])
                    with self._cond:
                        self._queue.popleft()
                        self.rejected += 1
                    continue
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    log.warning("mlflow: call to %s failed (%s); training goes on, retrying with backoff",
                                self.uri, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
                with self._cond:
                    if self._closing and time.monotonic() >= self._deadline:
                        return
                    self._cond.wait(timeout=backoff)
                backoff = min(backoff * 2, self.cfg.max_backoff_s)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything queued so far has been sent (True) or ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + (self.cfg.flush_timeout_s if timeout_s is None else timeout_s)
        while time.monotonic() < deadline:
            with self._cond:
                if not self._queue and self.run_id is not None:
                    return True
            time.sleep(0.1)
        return False

    def close(self, status: str = "FINISHED") -> None:
        """End the run (status FINISHED/FAILED), flushing for at most ``flush_timeout_s``; never raises."""
        self._put("call", lambda client, run_id: client.set_terminated(run_id, status))
        with self._cond:
            self._deadline = time.monotonic() + self.cfg.flush_timeout_s
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout=self.cfg.flush_timeout_s + 5)
        with self._cond:
            self.dropped = len(self._queue)
        if self.dropped:
            log.warning("mlflow: %s unreachable for %.0f s; %d queued call(s) were not sent",
                        self.uri, self.cfg.flush_timeout_s, self.dropped)
