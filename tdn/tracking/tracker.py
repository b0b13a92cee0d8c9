"""MLflow tracking from rank 0 that never stops training when the tracking server goes away.

Every call (params, metrics, tags, dataset inputs, artifacts, model registration, the end of the run) is a
typed operation (tdn/tracking/operations.py), queued and sent by one background thread through
``MlflowClient``. A failed call stays at the head of the queue and is retried with exponential backoff
(capped), checking first what already arrived, so calls arrive in order and once when the server is back; metrics queued meanwhile are merged into
batches. The training thread only appends to a queue (and, with a ``wal_dir``, to the write-ahead log on
disk first: tdn/tracking/wal.py): it never waits on the network, except in ``close()``, which gives the
queue ``flush_timeout_s`` to drain. What is still unsent then goes to a durable journal in ``journal_dir``
(tdn/tracking/journal.py; ``pending`` counts it, ``python -m jobs.replay_tracking`` sends it later); without
a ``journal_dir`` it is dropped with a warning (``dropped``).

Exactly once per (key, step): calls a killed attempt left in the write-ahead log are sent first by the next
attempt, as repeats; a reopened run's metrics are read once (``_ledger``) and a metric already logged at a
step is never logged there again, so an epoch replayed after a restart adds nothing its first attempt sent.

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
    tracking_off,
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
from tdn.tracking.registry import RegistrationRefused
from tdn.tracking.wal import WriteAheadLog

log = logging.getLogger(__name__)


@dataclass
class TrackingConfig:
    """Where and what to log. ``uri`` empty = MLFLOW_TRACKING_URI, else ``sqlite:///mlruns/mlflow.db``;
    ``none`` = no tracking (``enabled`` false)."""

    enabled: bool = True  # log to MLflow
    uri: str = ""  # MLflow tracking URI; empty: MLFLOW_TRACKING_URI, else the local store; none: no tracking
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

    def __post_init__(self) -> None:
        if tracking_off(self.uri):  # --tracking-uri none: as tracking.enabled=false
            self.enabled = False

    def resolved_uri(self) -> str:
        """The URI to use, with a relative sqlite path made absolute (Ray workers run in another folder);
        ``none`` stays ``none`` (tracking off)."""
        return self.uri if tracking_off(self.uri) else resolve_tracking_uri(self.uri)


def _is_permanent(exc: Exception) -> bool:
    """An answer from the store/server that will not change on retry (HTTP 4xx other than 429), or a model
    the registry must refuse (non-finite weights or scores)."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, RegistrationRefused):
        return True
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


@dataclass
class _Queued:
    """A call waiting to be sent, the write-ahead log's numbers of the calls merged into it, and whether it
    may have reached MLflow already (recovered from an earlier attempt's log)."""

    op: Operation
    seqs: list[int]
    again: bool = False


class Tracker:
    """Queued, retried MLflow logging for one training run. Use only on rank 0; all methods return at once."""

    def __init__(
        self,
        cfg: TrackingConfig,
        run_key: str,
        run_name: str | None = None,
        journal_dir: str = "",
        wal_dir: str = "",
    ) -> None:
        self.cfg = cfg
        self.journal_dir = journal_dir  # where unsent calls go at close(); "" = dropped
        self.journal: str | None = None  # the journal written by close(), if any
        self.pending = 0  # calls written to the journal by close()
        self.in_wal = 0  # calls a KILLED run left in its write-ahead log for the resumed run
        self.uri = cfg.resolved_uri()
        self.run_key = run_key
        self.run_name = run_name or run_key
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.dropped = 0
        self.failures = 0  # failed attempts so far (a test and the logs read this)
        self.rejected = 0  # calls the server refused (4xx): dropped at once, never retried
        self._queue: deque[_Queued] = deque()
        self._wal = WriteAheadLog(wal_dir) if wal_dir else None
        # (key, step) of every metric the run has: read once when the run is opened, then kept up to date
        self._ledger: set[tuple[str, int]] = set()
        if self._wal is not None:
            for op in self._wal.recovered:  # what a killed attempt queued and MLflow never acknowledged
                seq = self._wal.adopt(op)
                if isinstance(op, EndRun):  # this attempt ends the run itself
                    self._wal.acknowledge([seq])
                else:
                    self._queue.append(_Queued(op, [seq], again=True))
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
            seqs: list[int] = []
            if self._wal is not None:
                seq, op = self._wal.append(op)  # on disk before it is queued
                seqs.append(seq)
            last = self._queue[-1] if len(self._queue) > 1 else None
            if (
                isinstance(op, LogMetrics)
                and last is not None
                and isinstance(last.op, LogMetrics)
                and not last.again
            ):
                # merge consecutive metric batches: one request instead of many after an outage (never into
                # the head, which the sender may be reading right now)
                last.op.items.extend(op.items)
                last.seqs.extend(seqs)
            else:
                self._queue.append(_Queued(op, seqs))
            self._cond.notify()

    def log_metrics(self, metrics: Mapping[str, float], step: int, dataset: DatasetRef | None = None) -> None:
        """``dataset``: the split the values were measured on (e.g. the val split for ``val/*``); MLflow
        then shows the metric with that dataset."""
        self.log_metric_groups(step, [(metrics, dataset)])

    def log_metric_groups(
        self, step: int, groups: Sequence[tuple[Mapping[str, float], DatasetRef | None]]
    ) -> None:
        """Several groups of metrics, each with its dataset, as one call (one MLflow request: all or none
        of them arrive, so an epoch's metrics are either all logged or none)."""
        stamp = int(time.time() * 1000)
        items = []
        for metrics, dataset in groups:
            name, digest = (dataset.name, dataset.digest) if dataset is not None else ("", "")
            items += [MetricItem(k, float(v), stamp, int(step), name, digest) for k, v in metrics.items()]
        if items:
            self._put(LogMetrics(items))

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

    def register_model(
        self,
        checkpoint_path: str,
        name: str,
        metrics: Mapping[str, float],
        alias: str = "",
        example_path: str = "",
    ) -> None:
        """Log the checkpoint as the run's model and register it (once, however often this is retried);
        ``example_path``: a model_export.InputExample file, the logged model's input example."""
        scores = {k: float(v) for k, v in metrics.items()}
        self._put(RegisterModel(checkpoint_path, name, scores, alias, self.cfg.export_model, example_path))

    # ---- consumer side (background thread) ----
    def _open_run(self, client: Any) -> str:
        run_id, self.experiment_id = open_train_run(
            client, self.cfg.experiment, self.run_key, self.run_name, reopen=True
        )
        # a reopened run (restarted worker group, or the same run name launched again): what it logged
        # before, so that replayed epochs log nothing twice (system/* metrics are MLflow's own monitor's)
        logged = [key for key in client.get_run(run_id).data.metrics if not key.startswith("system/")]
        self._ledger = {(m.key, m.step) for key in logged for m in client.get_metric_history(run_id, key)}
        log.info(
            "mlflow: run %s (%s) in experiment %s at %s", run_id, self.run_key, self.cfg.experiment, self.uri
        )
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
                    self._send(client, head, RunTarget(self.run_id, self.experiment_id))
                    with self._cond:
                        self._queue.popleft()
                        if self._wal is not None:
                            self._wal.acknowledge(head.seqs)
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
                        if self._wal is not None:
                            self._wal.acknowledge(head.seqs)
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

    def _send(self, client: Any, queued: _Queued, target: RunTarget) -> None:
        """One queued call; metrics the run has at their step already are left out (the ledger)."""
        op = queued.op
        if isinstance(op, LogMetrics):
            fresh = [i for i in op.items if (i.key, i.step) not in self._ledger]
            op = LogMetrics(fresh)
            if not fresh:
                return
        op.send(client, target, again=self._retrying or queued.again)
        if isinstance(op, LogMetrics):
            self._ledger.update((i.key, i.step) for i in op.items)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything queued so far has been sent (True) or ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + (self.cfg.flush_timeout_s if timeout_s is None else timeout_s)
        while time.monotonic() < deadline:
            with self._cond:
                if not self._queue and self.run_id is not None:
                    return True
            time.sleep(0.1)
        return False

    def close(self, status: str = "FINISHED", timeout_s: float | None = None) -> None:
        """End the run (status FINISHED/FAILED/KILLED), flushing for at most ``timeout_s`` (default
        ``flush_timeout_s``); never raises.

        Calls still unsent then are written to the journal (``self.journal``, ``self.pending``) and the run
        is ended directly if the server answers now; else the journal's replay ends it."""
        wait_s = self.cfg.flush_timeout_s if timeout_s is None else timeout_s
        self._put(EndRun(status))
        with self._cond:
            self._deadline = time.monotonic() + wait_s
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout=wait_s + 5)
        with self._cond:
            left = [queued.op for queued in self._queue]
        if not left:
            return
        if status == "KILLED" and self._wal is not None:
            # a stopped run is resumed under the same name: its next start sends these from the log
            self.in_wal = len(left)
            log.warning("mlflow: %d call(s) unsent at the stop; the resumed run sends them", self.in_wal)
            return
        if not self.journal_dir:
            self.dropped = len(left)
            log.warning(
                "mlflow: %s unreachable for %.0f s; %d queued call(s) were not sent",
                self.uri,
                wait_s,
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
        if self._wal is not None:  # the journal holds them now
            self._wal.acknowledge([seq for queued in self._queue for seq in queued.seqs])
        log.warning(
            "mlflow: %s unreachable for %.0f s; %d call(s) kept in %s",
            self.uri,
            wait_s,
            self.pending,
            self.journal,
        )
        if self.run_id is not None:
            try:  # one direct try, so the run is not left RUNNING when the server is back already
                tracking_client(self.uri).set_terminated(self.run_id, status)
            except Exception:  # noqa: BLE001
                pass
