"""MLflow tracking from rank 0 that never stops training when the tracking server goes away.

Every call (params, metrics, tags, dataset inputs, artifacts, model registration, the end of the run) is a
typed operation (tdn/tracking/operations.py), queued and sent by one background thread through
``MlflowClient``. A failed call stays at the head of the queue and is retried with exponential backoff
(capped), checking first what already arrived, so calls arrive in order and once when the server is back; metrics queued meanwhile are merged into
batches. The training thread only appends to a queue: it never waits on the network, except in ``close()``,
which gives the queue ``flush_timeout_s`` to drain. What is still unsent then goes to a durable journal in
``journal_dir`` (tdn/tracking/journal.py; ``pending`` counts it, ``python jobs/replay_tracking.py`` sends it
later); without a ``journal_dir`` it is dropped with a warning (``dropped``).

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tdn.tracking.journal import JournalHeader, write_journal
from tdn.tracking.lineage import DatasetRef, ShardDataset
from tdn.tracking.mlflow_store import (
    PARAM_VALUE_LIMIT,
    make_sqlite_folder,
    open_train_run,
    resolve_tracking_uri,
    tracking_client,
)
from tdn.tracking.operations import (
    EndRun,
    LogArtifact,
    LogInputs,
    LogMetrics,
    LogParams,
    MetricItem,
    Operation,
    RegisterModel,
    RunTarget,
    SetTags,
)

log = logging.getLogger(__name__)


@dataclass
class TrackingConfig:
    """Where and what to log. ``uri`` empty = MLFLOW_TRACKING_URI, else ``sqlite:///mlruns/mlflow.db``."""

    enabled: bool = True  # log to MLflow
    uri: str = ""  # MLflow tracking URI
    experiment: str = "tdn-train"  # MLflow experiment
    registered_model: str = "tdn"  # empty = do not register the final model
    registered_alias: str = ""  # e.g. "champion"; empty = no alias
    # Also register a pt2 (torch.export) model that mlflow.pytorch.load_model reads; ~15 s of CPU for R50 8f
    export_model: bool = True
    log_every_steps: int = 20  # log training metrics every this many steps
    request_timeout_s: int = 10  # timeout of one MLflow request
    max_backoff_s: float = 30.0  # longest pause between retries while MLflow is unreachable
    flush_timeout_s: float = 120.0  # at the end, wait this long for queued calls, then journal them
    system_metrics: bool = (
        True  # CPU, memory, disk, network (GPU with nvidia-ml-py) per node, as system/<node>/*
    )
    system_metrics_interval_s: float = 10.0  # seconds between two system-metric samples

    def resolved_uri(self) -> str:
        """The URI to use, with a relative sqlite path made absolute (Ray workers run in another folder)."""
        return resolve_tracking_uri(self.uri)


def _is_permanent(exc: Exception) -> bool:
    """An answer from the store/server that will not change on retry (HTTP 4xx other than 429)."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return False  # connection refused, timeouts: the server may come back
    code = exc.get_http_status_code()
    return exc.error_code in _PERMANENT or (400 <= code < 500 and code != 429)


_PERMANENT = {
    "INVALID_PARAMETER_VALUE",
    "RESOURCE_DOES_NOT_EXIST",
    "RESOURCE_ALREADY_EXISTS",
    "BAD_REQUEST",
    "INVALID_STATE",
    "PERMISSION_DENIED",
}


class Tracker:
    """Queued, retried MLflow logging for one training run. Use only on rank 0; all methods return at once."""

    def __init__(self, cfg: TrackingConfig, run_key: str, run_name: str | None = None,
                 journal_dir: str = "") -> None:  # fmt: skip
        self.cfg = cfg
        self.journal_dir = journal_dir  # where unsent calls go at close(); "" = dropped
        self.journal: str | None = None  # the journal written by close(), if any
        self.pending = 0  # calls written to the journal by close()
        self.uri = cfg.resolved_uri()
        self.run_key = run_key
        self.run_name = run_name or run_key
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.dropped = 0
        self.failures = 0  # failed attempts so far (a test and the logs read this)
        self.rejected = 0  # calls the server refused (4xx): dropped at once, never retried
        self._queue: deque[Operation] = deque()
        self._retrying = False  # the head failed once: it may have arrived in part
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
    def _put(self, op: Operation) -> None:
        with self._cond:
            last = self._queue[-1] if len(self._queue) > 1 else None
            if isinstance(op, LogMetrics) and isinstance(last, LogMetrics):
                # merge consecutive metric batches: one request instead of many after an outage (never into
                # the head, which the sender may be reading right now)
                last.items.extend(op.items)
            else:
                self._queue.append(op)
            self._cond.notify()

    def log_metrics(self, metrics: Mapping[str, float], step: int, dataset: DatasetRef | None = None) -> None:
        """``dataset``: the split the values were measured on (e.g. the val split for ``val/*``); MLflow
        then shows the metric with that dataset."""
        stamp = int(time.time() * 1000)
        name, digest = (dataset.name, dataset.digest) if dataset is not None else ("", "")
        self._put(LogMetrics([MetricItem(k, float(v), stamp, int(step), name, digest)
                              for k, v in metrics.items()]))  # fmt: skip

    def log_inputs(self, datasets: Sequence[ShardDataset]) -> None:
        """The shard splits the run reads, as its MLflow dataset inputs (the run's Datasets panel)."""
        self._put(LogInputs(list(datasets)))

    def log_params(self, params: Mapping[str, Any]) -> None:
        # MLflow caps a value at 6000 characters; lists of class names can be longer.
        self._put(LogParams({k: str(v)[:PARAM_VALUE_LIMIT] for k, v in params.items()}))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._put(SetTags({k: str(v) for k, v in tags.items()}))

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        """The file must stay in place until ``close()`` (it is uploaded from the background thread)."""
        self._put(LogArtifact(local_path, artifact_path or ""))

    def register_model(self, checkpoint_path: str, name: str, metrics: Mapping[str, float],
                       alias: str = "") -> None:  # fmt: skip
        """Log the checkpoint as the run's model and register it (once, however often this is retried)."""
        scores = {k: float(v) for k, v in metrics.items()}
        self._put(RegisterModel(checkpoint_path, name, scores, alias, export=self.cfg.export_model))

    # ---- consumer side (background thread) ----
    def _open_run(self, client: Any) -> str:
        run_id, self.experiment_id = open_train_run(client, self.cfg.experiment, self.run_key, self.run_name,
                                                    reopen=True)  # fmt: skip
        log.info("mlflow: run %s (%s) in experiment %s at %s", run_id, self.run_key, self.cfg.experiment,
                 self.uri)  # fmt: skip
        return run_id

    def _worker(self) -> None:
        client = tracking_client(self.uri)
        backoff = 1.0
        while True:
            with self._cond:
                if self._closing and time.monotonic() >= self._deadline:
                    return  # close() gave up waiting: what is left goes to the journal
                while not self._queue and not self._closing and self.run_id is not None:
                    self._cond.wait()
                if not self._queue and (self._closing or self.run_id is not None):
                    return
                head = self._queue[0] if self._queue else None
            try:
                if self.run_id is None:
                    self.run_id = self._open_run(client)
                if head is not None:
                    assert self.experiment_id is not None
                    head.send(client, RunTarget(self.run_id, self.experiment_id), again=self._retrying)
                    with self._cond:
                        self._queue.popleft()
                    self._retrying = False
                if self._outage_since is not None:
                    log.warning(
                        "mlflow: %s reachable again after %.0f s; sending %d queued call(s)",
                        self.uri,
                        time.monotonic() - self._outage_since,
                        len(self._queue),
                    )
                    self._outage_since = None
                backoff = 1.0
            except Exception as exc:  # noqa: BLE001 - the tracking server must never kill training
                self.failures += 1
                self._retrying = True
                if head is not None and self.run_id is not None and _is_permanent(exc):
                    # the server answered "no" (bad value, missing resource): retrying cannot help
                    log.warning("mlflow: call rejected by %s, skipped: %s", self.uri, str(exc)[:300])
                    with self._cond:
                        self._queue.popleft()
                        self.rejected += 1
                    self._retrying = False
                    continue
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    log.warning(
                        "mlflow: call to %s failed (%s); training goes on, retrying with backoff",
                        self.uri,
                        str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                    )
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
        """End the run (status FINISHED/FAILED), flushing for at most ``flush_timeout_s``; never raises.

        Calls still unsent then are written to the journal (``self.journal``, ``self.pending``) and the run
        is ended directly if the server answers now; else the journal's replay ends it."""
        self._put(EndRun(status))
        with self._cond:
            self._deadline = time.monotonic() + self.cfg.flush_timeout_s
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout=self.cfg.flush_timeout_s + 5)
        with self._cond:
            left = list(self._queue)
        if not left:
            return
        if not self.journal_dir:
            self.dropped = len(left)
            log.warning(
                "mlflow: %s unreachable for %.0f s; %d queued call(s) were not sent",
                self.uri,
                self.cfg.flush_timeout_s,
                self.dropped,
            )
            return
        header = JournalHeader(self.uri, self.cfg.experiment, self.run_key, self.run_name, self.run_id or "")
        try:
            self.journal = write_journal(self.journal_dir, header, left)
        except Exception:  # noqa: BLE001 - still never raises, but says loudly what was lost
            log.exception(
                "mlflow: could not write the journal in %s; %d call(s) lost", self.journal_dir, len(left)
            )
            self.dropped = len(left)
            return
        self.pending = len(left)
        log.warning(
            "mlflow: %s unreachable for %.0f s; %d call(s) kept in %s",
            self.uri,
            self.cfg.flush_timeout_s,
            self.pending,
            self.journal,
        )
        if self.run_id is not None:
            try:  # one direct try, so the run is not left RUNNING when the server is back already
                tracking_client(self.uri).set_terminated(self.run_id, status)
            except Exception:  # noqa: BLE001
                pass
