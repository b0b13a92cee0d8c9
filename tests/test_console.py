"""Ray's own console output (pipeline/ray_connect.py): its known-harmless lines are dropped by default and come
back with --verbose; errors and the project's own lines always reach the console.

The lines below were printed by a real quickstart (Ray 2.60, 2 training workers, 3 epochs); the end-to-end
check that a quickstart prints no per-report lines and ETA progress lines is in tests/test_quickstart.py.
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pipeline import ray_connect, ray_noise

REPO = Path(__file__).resolve().parent.parent

NOISE = [
    "\x1b[36m(RayTrainWorker pid=7411)\x1b[0m Reporting training result 1: TrainingReport(checkpoint=None, "
    "metrics={'epoch': 1, 'step': 4, 'train_loss': 1.3956149220466614}) from rank 1",
    "Checkpoint successfully created at: Checkpoint(filesystem=local, path=/tmp/qs/ray_results/tdn/checkpoint_1)",
    "[2026-11-29 06:23:11,399 E 7082 7276] core_worker.cc:2465: Actor with class name: 'PreemptionWatcher' and "
    "ID: '9769c98ccfc905a840f2fdfb01000000' has constructor arguments in the object store and max_restarts > 0. "
    "If the arguments in the object store go out of scope or are lost, the actor restart will fail.",
    "[2026-12-07 06:42:19,774 E 23681 23681] core_worker.cc:2465: Actor with class name: "
    "'MapWorker(MapBatches(_Replica))' and ID: '147791572603d0718ee7961601000000' has constructor arguments in "
    "the object store and max_restarts > 0. If the arguments in the object store go out of scope or are lost, "
    "the actor restart will fail. See https://github.com/ray-project/ray/issues/53727 for more details.",
    "Progress bars disabled. To enable, set `ray.data.DataContext.get_current().enable_progress_bars = True`.",
    "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.",
    "2026/11/29 06:23:55 INFO mlflow.store.db.utils: Creating initial MLflow database tables...",
    "2026/11/29 06:40:03 INFO mlflow.system_metrics.system_metrics_monitor: Skip logging GPU metrics. Set logger "
    "level to DEBUG for more details.",
    "2026/11/29 06:40:13 INFO mlflow.system_metrics.system_metrics_monitor: Stopping system metrics monitoring...",
    "2026/11/29 06:40:14 WARNING mlflow.utils.requirements_utils: Found torch version (2.13.0+cpu) contains a "
    "local version label (+cpu). MLflow logged a pip requirement for this package as 'torch==2.13.0' without "
    "the local version label to make it installable from PyPI.",
    # a shard job and an evaluation with stdout to a file (Ray 2.60, 2026-12-07)
    "2026-12-07 06:36:52,909\tINFO worker.py:2029 -- Started a local Ray instance. View the dashboard at "
    "\x1b[1m\x1b[32mhttp://127.0.0.1:8265 \x1b[39m\x1b[22m",
    "2026-12-07 06:36:56,202\tINFO streaming_executor.py:215 -- Starting execution of Dataset "
    "dataset_035APc6ynao2z9MNIqs2RT_0. Full logs are in /tmp/ray/session_2026-12-07_06-36-37/logs/ray-data",
    "2026-12-07 06:36:56,202\tINFO streaming_executor.py:216 -- Execution plan of Dataset "
    "dataset_035APc6ynao2z9MNIqs2RT_0: InputDataBuffer[Input] -> TaskPoolMapOperator[Map(write_shard_row)]",
    "2026-12-07 06:36:56,207\tINFO __init__.py:56 -- Progress will be logged because stdout is a "
    "non-interactive terminal.",
    "2026-12-07 06:36:56,316\tINFO logging_progress.py:174 -- ======= Running Dataset: "
    "dataset_035APc6ynao2z9MNIqs2RT_0 =======",
    "2026-12-07 06:36:56,317\tINFO logging_progress.py:225 -- Total Progress: 0/?",
    "2026-12-07 06:36:56,317\tINFO logging_progress.py:227 -- Active & requested resources: 0/0 CPU, "
    "0.0B/0.0B object store",
    "2026-12-07 06:36:56,317\tINFO logging_progress.py:181 -- ",
    "2026-12-07 06:36:56,317\tINFO logging_progress.py:231 -- Map(write_shard_row): 0/1",
    "2026-12-07 06:36:56,317\tINFO logging_progress.py:233 --   Tasks: 1 [backpressured:tasks(ResourceBudget)]; "
    "Actors: 0; Queued blocks: 5 (0.0B); Resources: 1.0 CPU, 0.0B object store",
    "2026-12-07 06:36:56,317\tINFO logging_progress.py:192 -- " + "=" * 65,
    "2026-12-07 06:37:05,673\tINFO streaming_executor.py:371 -- \u2714\ufe0f  Dataset "
    "dataset_035APc6ynao2z9MNIqs2RT_0 execution finished in 9.47 seconds",
    # Ray Train's start-up (TrainController and worker lines, forwarded without their prefix)
    "Requesting resources: {'CPU': 1.0} * 1",
    "Attempting to start training worker group of size 1 with the following resources: [{'CPU': 1.0}] * 1",
    "Setting up process group for: env:// [rank=0, world_size=1]",
    "Started training worker group of size 2: ",
    "- (ip=192.0.2.2, pid=21861) world_rank=0, local_rank=0, node_rank=0",
    "Failed to send resource request for train-dd2f388fbf044783a55fe4d50ae65c8d. If this only happens "
    "transiently during network partition or CPU being overloaded, it's safe to ignore this error.",
]
KEPT = [
    "epoch 1 step 4/4 (4) | loss 1.397 lr 0.009634 ETA epoch 0:00 run 0:40",
    "[FailurePolicy] RETRY\n  Source: worker group\n  Error count: 1 (max allowed: 1)",  # a real failure
    "[2026-11-29 06:23:11,399 E 7082 7276] core_worker.cc:900: Actor with class name: 'RayTrainWorker' and ID: "
    "'ab' has constructor arguments in the object store and max_restarts > 0.",  # not Ray's own actor
    "Traceback (most recent call last):",
    "epoch 1/2 done | train loss 1.3950 top-1 25.0% | val top-1 18.8% top-5 100.0% | 0:05",
    "2026-12-07 06:36:56,317\tWARNING streaming_executor.py:300 -- a real warning of Ray Data",
    "[shard] 6/6 shards (0 already done), 24/24 videos, 2.5 videos/s, 0 quarantined, 10s",
    "- (ip=192.0.2.2, pid=21861) world_rank=0: something else",
]
# a "safe to ignore" error with its traceback, then the lines after it (real output, 2026-12-07)
TRACEBACK_NOISE = [
    "Failed to send resource request for train-dd2f388fbf044783a55fe4d50ae65c8d. If this only happens "
    "transiently during network partition or CPU being overloaded, it's safe to ignore this error.",
    "Traceback (most recent call last):",
    '  File "ray/train/v2/_internal/execution/scaling_policy/autoscaling_coordinator_client.py", line 58, in '
    "send_resource_request",
    "    ray.get(",
    '  File "python/ray/includes/common.pxi", line 107, in ray._raylet.check_status',
    "ray.exceptions.GetTimeoutError: Get timed out: some object(s) not ready.",
]


@pytest.fixture
def verbose_off():
    ray_connect.set_verbose(False)
    yield
    ray_connect.set_verbose(False)


def test_known_noise_only(verbose_off):
    assert all(n.why for n in ray_noise.KNOWN_NOISE)
    assert [line for line in NOISE if not ray_connect.is_noise(line)] == []
    assert [line for line in KEPT if ray_connect.is_noise(line)] == []
    ray_connect.set_verbose(True)
    assert not any(ray_connect.is_noise(line) for line in NOISE)


def test_a_noise_line_takes_its_traceback_along():
    """Ray prints some "safe to ignore" errors with a traceback: the traceback goes with its line, the next line
    stays; a traceback that follows anything else is a real error and stays whole."""
    stream = ray_noise.NoiseFilter()
    after = "epoch 1/2 done | train loss 1.3950 top-1 25.0% | val top-1 18.8% top-5 100.0% | 0:05"
    assert [line for line in [*TRACEBACK_NOISE, after] if stream.keep(line)] == [after]
    real = ["Traceback (most recent call last):", '  File "x.py", line 1, in <module>', "ValueError: bad"]
    assert [line for line in [NOISE[1], *real] if stream.keep(line)] == real  # noise without a traceback
    assert [line for line in [after, *real] if stream.keep(line)] == [after, *real]


def test_forwarded_lines_lose_colour_codes_and_noise_off_a_terminal(verbose_off, capsys):
    """What Ray's dispatcher hands our handler, batch by batch, before it prints the lines (stdout is not a
    terminal under pytest): colour codes go, noise goes, a traceback split over two batches goes with its
    line, and the PlacementGroupCleaner actor's lines all go."""
    first = {"pid": 11, "is_err": True, "lines": ["\x1b[31mred alert\x1b[0m", *TRACEBACK_NOISE[:3]]}
    ray_connect._forwarded(first)
    assert first["lines"] == ["red alert"]
    second = {
        "pid": 11,
        "is_err": True,
        "lines": [*TRACEBACK_NOISE[3:], "Started training worker group of size 2: "],
    }
    ray_connect._forwarded(second)
    assert second["lines"] == []
    cleaner = {"pid": 12, "actor_name": ray_connect.CLEANER_ACTOR, "lines": ["ConnectionError: refused"]}
    ray_connect._forwarded(cleaner)
    assert cleaner["lines"] == []
    ray_connect.set_verbose(True)
    noisy = {"pid": 13, "is_err": False, "lines": [NOISE[1], "\x1b[36mcyan\x1b[0m"]}
    ray_connect._forwarded(noisy)
    assert noisy["lines"] == [NOISE[1], "cyan"]  # --verbose keeps the lines, never the colours in a file


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_lines_are_one_live_bar_on_a_terminal(verbose_off, monkeypatch):
    """On a terminal each progress line replaces the last one in place; the epoch's summary line clears the
    bar and stays (Ray prints it after our handler returns)."""
    screen = _Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    progress = [
        f"epoch 1/2  {p}% step {s}/4 | loss 1.3 lr 0.01 | 9.0 samples/s" for p, s in ((25, 1), (50, 2))
    ]
    summary = "epoch 1/2 done | train loss 1.3950 top-1 25.0% | val top-1 18.8% top-5 100.0% | 0:05"
    batches = [[progress[0]], [progress[1]], [summary]]
    printed = []
    for lines in batches:
        data = {"pid": 7, "actor_name": "RayTrainWorker", "is_err": False, "lines": lines}
        ray_connect._forwarded(data)
        printed.append(data["lines"])
    assert printed == [[], [], [summary]]
    bar = "\x1b[36m(RayTrainWorker pid=7)\x1b[0m "
    assert screen.getvalue() == (
        f"{bar}{progress[0]}\x1b[K" + f"\r\x1b[K{bar}{progress[1]}\x1b[K" + "\r\x1b[K"
    ), repr(screen.getvalue())


def test_the_jobs_own_stderr_is_filtered_below_python(tmp_path):
    """Ray's C++ core writes its max_restarts line straight to file descriptor 2 of the driver: a process that
    is the job routes fd 2 through the same filter, drained when the process exits."""
    script = (
        "import os, sys\n"
        "from pipeline import ray_connect\n"
        "ray_connect.set_verbose(False, own_stderr=True)\n"
        "ray_connect._filter_own_stderr()\n"
        f"os.write(2, {NOISE[3].encode()!r} + b'\\n')\n"
        "os.write(2, b'\\x1b[31ma real error\\x1b[0m\\n')\n"
        "print('from python', file=sys.stderr)\n"
        "os.write(2, b'no newline at the end')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "a real error\nfrom python\nno newline at the end\n", repr(proc.stderr)


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
