"""Ray's own console output (pipeline/ray_connect.py): its known-harmless lines are dropped by default and come
back with --verbose; errors and the project's own lines always reach the console.

The lines below were printed by a real quickstart (Ray 2.60, 2 training workers, 3 epochs); the end-to-end
check that a quickstart prints no per-report lines and ETA progress lines is in tests/test_quickstart.py.
"""

from __future__ import annotations

import time
import uuid

import pytest

from pipeline import ray_connect

NOISE = [
    "\x1b[36m(RayTrainWorker pid=7411)\x1b[0m Reporting training result 1: TrainingReport(checkpoint=None, "
    "metrics={'epoch': 1, 'step': 4, 'train_loss': 1.3956149220466614}) from rank 1",
    "Checkpoint successfully created at: Checkpoint(filesystem=local, path=/tmp/qs/ray_results/tdn/checkpoint_1)",
    "[2026-11-29 06:23:11,399 E 7082 7276] core_worker.cc:2465: Actor with class name: 'PreemptionWatcher' and "
    "ID: '9769c98ccfc905a840f2fdfb01000000' has constructor arguments in the object store and max_restarts > 0. "
    "If the arguments in the object store go out of scope or are lost, the actor restart will fail.",
    "Progress bars disabled. To enable, set `ray.data.DataContext.get_current().enable_progress_bars = True`.",
    "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.",
    "2026/11/29 06:23:55 INFO mlflow.store.db.utils: Creating initial MLflow database tables...",
    "2026/11/29 06:40:03 INFO mlflow.system_metrics.system_metrics_monitor: Skip logging GPU metrics. Set logger "
    "level to DEBUG for more details.",
    "2026/11/29 06:40:13 INFO mlflow.system_metrics.system_metrics_monitor: Stopping system metrics monitoring...",
]
KEPT = [
    "epoch 1 step 4/4 (4) | loss 1.397 lr 0.009634 ETA epoch 0:00 run 0:40",
    "[FailurePolicy] RETRY\n  Source: worker group\n  Error count: 1 (max allowed: 1)",  # a real failure
    "[2026-11-29 06:23:11,399 E 7082 7276] core_worker.cc:900: Actor with class name: 'RayTrainWorker' and ID: "
    "'ab' has constructor arguments in the object store and max_restarts > 0.",  # not Ray Train's watcher
    "Traceback (most recent call last):",
    "Started training worker group of size 2:",
    "epoch 1/2 done | train loss 1.3950 top-1 25.0% | val top-1 18.8% top-5 100.0% | 0:05",
    "2026/11/29 06:40:14 WARNING mlflow.utils.requirements_utils: Found torch version (2.13.0+cpu) contains a "
    "local version label (+cpu).",
]


@pytest.fixture
def verbose_off():
    ray_connect.set_verbose(False)
    yield
    ray_connect.set_verbose(False)


def test_known_noise_only(verbose_off):
    assert all(n.why for n in ray_connect.KNOWN_NOISE)
    assert [line for line in NOISE if not ray_connect.is_noise(line)] == []
    assert [line for line in KEPT if ray_connect.is_noise(line)] == []
    ray_connect.set_verbose(True)
    assert not any(ray_connect.is_noise(line) for line in NOISE)


def _forwarded(capsys: pytest.CaptureFixture[str], token: str, timeout_s: float = 20.0) -> str:
    """What the driver printed of the workers' output, once the line carrying ``token`` arrived."""
    seen = ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        captured = capsys.readouterr()
        seen += captured.out + captured.err
        if f"{token} done" in seen:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"the worker's lines never reached the driver: {seen[-2000:]}")


def test_forwarded_worker_lines_are_filtered_on_the_driver(ray_cluster, verbose_off, capsys):
    """A Ray task prints Ray Train's per-report line and a progress line; the driver shows only the
    progress line, and both with --verbose (set_verbose(True))."""
    import ray

    @ray.remote(num_cpus=0)
    def chatter(token: str) -> None:
        print(f"Reporting training result 1: TrainingReport(metrics={{'token': '{token}'}}) from rank 0")
        print(f"epoch 1 step 4/4 | {token} ETA epoch 0:01 run 0:09")
        print(f"{token} done", flush=True)

    ray_connect.init_ray()  # already connected (the test cluster): installs the filter only
    token = uuid.uuid4().hex
    ray.get(chatter.remote(token))
    out = _forwarded(capsys, token)
    assert f"epoch 1 step 4/4 | {token}" in out and "Reporting training result" not in out, out

    ray_connect.set_verbose(True)
    token = uuid.uuid4().hex
    ray.get(chatter.remote(token))
    out = _forwarded(capsys, token)
    assert f"Reporting training result 1: TrainingReport(metrics={{'token': '{token}'}})" in out, out


def test_ray_loggers_on_the_driver_drop_noise(verbose_off):
    """Ray's own loggers on the driver ("ray", and "ray.data" with its own handlers) drop the same lines."""
    import logging

    import ray.data  # noqa: F401  (configures the "ray.data" logger's handlers)

    ray_connect.quiet_console()

    def shown(logger: str, message: str) -> list[bool]:
        record = logging.LogRecord(logger, logging.WARNING, __file__, 1, message, None, None)
        return [bool(h.filter(record)) for h in logging.getLogger(logger).handlers]

    progress = (
        "Progress bars disabled. To enable, set `ray.data.DataContext.get_current().enable_progress_bars`"
    )
    assert shown("ray.data", progress) and not any(shown("ray.data", progress))
    assert all(shown("ray.data", "a real warning")) and all(shown("ray", "a real warning"))
    assert not any(shown("ray", NOISE[4]))
    ray_connect.set_verbose(True)
    assert all(shown("ray.data", progress))
