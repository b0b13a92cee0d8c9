"""Preemption: SIGTERM or SIGINT to the training driver end the run cleanly, and the same command resumes it.

    driver (launcher.fit)   DriverSignals(run_key, grace) installed around trainer.fit(), which runs on a
                            side thread so that the main thread takes the signals (Ray Train's own SIGINT
                            handler is registered only on the main thread)
      first SIGTERM/SIGINT  -> StopRequest(signal, deadline = now + run.preemption_grace_s) into Ray's
                               internal key-value store under the run's key
      second signal, or the deadline passed with workers still running -> the driver stops waiting
    workers (loop.py)       StopWatcher polls the store (a background thread, every 0.5 s); after each step
                            the ranks agree (an all-reduce of the flag, so all stop at the same step):
                            save a checkpoint if the deadline leaves time, flush the MLflow calls (the
                            write-ahead log keeps the rest), end the MLflow run KILLED with a tag saying why,
                            return; fit() returns and the driver exits 143 (SIGTERM) / 130 (SIGINT)
                            with one line naming the command that resumes the run.

What the platforms give: Kubernetes sends SIGTERM to every container of an evicted pod, then SIGKILL after
``terminationGracePeriodSeconds`` (default 30 s): set it above ``run.preemption_grace_s`` on the driver's
pod (docs/cluster.md). ``ray job stop`` sends SIGTERM, then SIGKILL after RAY_JOB_STOP_WAIT_TIME_S (3 s
by default: raise it on the cluster). Spot instances are reclaimed after a notice (AWS: 2 minutes, GCP: 30 s)
that a node termination handler turns into the same SIGTERM.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.distributed as dist

KV_NAMESPACE = "tdn"
EXIT_CODES = {"SIGTERM": 143, "SIGINT": 130}  # 128 + the signal's number, as a shell reports it


@dataclass(frozen=True)
class StopRequest:
    """Why and until when: the workers must be done by ``deadline`` (time.time())."""

    signal: str  # SIGTERM | SIGINT
    received: float  # time.time() at the driver
    deadline: float

    def reason(self) -> str:
        return f"{self.signal} received by the training driver"


def stop_key(run_key: str) -> bytes:
    return f"stop/{run_key}".encode()


def _kv_put(key: bytes, value: bytes) -> None:
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(key, value, overwrite=True, namespace=KV_NAMESPACE)


def _kv_get(key: bytes) -> bytes | None:
    from ray.experimental import internal_kv

    value = internal_kv._internal_kv_get(key, namespace=KV_NAMESPACE)
    return bytes(value) if value is not None else None


def clear_stop(run_key: str) -> None:
    """Forget an earlier stop of this run (a relaunch of the same run name)."""
    from ray.experimental import internal_kv

    internal_kv._internal_kv_del(stop_key(run_key), namespace=KV_NAMESPACE)


class DriverSignals:
    """The driver's SIGTERM/SIGINT handlers while a run trains (see the module docstring)."""

    def __init__(self, run_key: str, grace_s: float) -> None:
        self.run_key, self.grace_s = run_key, grace_s
        self.request: StopRequest | None = None
        self.impatient = False  # a second signal: stop waiting for the workers

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.request is not None:
            self.impatient = True
            return
        now = time.time()
        self.request = StopRequest(name, now, now + self.grace_s)
        _kv_put(stop_key(self.run_key), json.dumps(asdict(self.request)).encode())

    @contextmanager
    def installed(self) -> Iterator[DriverSignals]:
        if threading.current_thread() is not threading.main_thread():
            # Python delivers signals to the main thread only, and only it may install handlers: a driver
            # that trains from threads of its own (transfer's parallel splits) keeps its process's handlers.
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def run(self, fit: Callable[[], Any]) -> Any:
        """``fit()`` on a side thread, the main thread waiting with the handlers installed; returns its
        result, raises its error, or returns None when the driver stopped waiting (second signal, or the
        grace period is over)."""
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["result"] = fit()
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread as it is
                outcome["error"] = exc

        thread = threading.Thread(target=target, name="ray-train-fit", daemon=True)
        with self.installed():
            thread.start()
            while thread.is_alive():
                thread.join(timeout=0.2)
                late = self.request is not None and time.time() > self.request.deadline + 5.0
                if self.impatient or late:
                    return None
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]


class StopWatcher:
    """A worker's view of the run's stop request: polled in the background, agreed on by all ranks."""

    def __init__(self, run_key: str, poll_s: float = 0.5) -> None:
        self.key = stop_key(run_key)
        self.request: StopRequest | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(poll_s,), name="stop-watcher", daemon=True)
        self._thread.start()

    def _poll(self, poll_s: float) -> None:
        while not self._done.is_set():
            try:
                value = _kv_get(self.key)
            except Exception:  # noqa: BLE001 - the store may be restarting: look again later
                value = None
            if value is not None:
                self.request = StopRequest(**json.loads(value))
                return
            self._done.wait(poll_s)

    def close(self) -> None:
        self._done.set()

    def agreed(self, device: torch.device) -> StopRequest | None:
        """The stop request once every rank has to stop (called by all ranks after the same step)."""
        flag = self.request is not None
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            t = torch.tensor([1.0 if flag else 0.0], device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
        if not flag:
            return None
        while self.request is None:  # another rank saw it first: this one reads it now
            value = _kv_get(self.key)
            self.request = StopRequest(**json.loads(value)) if value is not None else None
        return self.request
