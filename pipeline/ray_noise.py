"""The lines Ray, Ray Data, Ray Train and MLflow print that carry nothing a user acts on, each with why.

    match(line) -> KnownNoise | None       one line as printed (a forwarded worker line without Ray's prefix,
                                           a logging line with or without its time stamp)
    NoiseFilter().keep(line) -> bool       one stream's lines in order: also drops the traceback that follows
                                           a noise line marked ``traceback`` (Ray prints "safe to ignore" errors
                                           with their traceback)
    strip_colour(line)                     ANSI colour codes removed (what a log file should not carry)

pipeline/ray_connect.py applies these to Ray's logging, the worker output Ray forwards to the driver and the
driver's own stderr; ``--verbose`` keeps everything. Ray's session log files keep every line either way.
A pattern is searched for anywhere in the line, so it must be specific enough never to hit a real failure:
tests/test_console.py holds real lines that must pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownNoise:
    """A line that is harmless, and why."""

    pattern: str  # regular expression searched for in each line
    why: str  # why dropping it hides nothing a user needs
    traceback: bool = False  # a traceback that follows the line belongs to it and is dropped with it


KNOWN_NOISE: tuple[KnownNoise, ...] = (
    KnownNoise(
        r"Reporting training result \d+: ",
        "Ray Train (train/v2/_internal/execution/context.py, INFO) echoes every ray.train.report of every rank "
        "with its metrics dict: the numbers of rank 0's epoch line again, once per worker (a 3-epoch, "
        "2-worker quickstart printed each epoch three times)",
    ),
    KnownNoise(
        r"Checkpoint successfully created at: ",
        "Ray Train (INFO) after each reported checkpoint; the kept checkpoints are in the job's summary "
        "and in MLflow",
    ),
    KnownNoise(
        r"Actor with class name: '(?:PreemptionWatcher|MapWorker\(.*?\))' and ID: '\w+' has constructor "
        r"arguments in the object store and max_restarts > 0",
        "an error-level C++ line (core_worker.cc, in red on a terminal) about an actor Ray itself creates with "
        "its constructor arguments in the object store: Ray Train's PreemptionWatcher at every training "
        "start, Ray Data's MapWorker for each evaluation replica pool (ray-project/ray#53727); a remark on how "
        "Ray would restart the actor, nothing failed",
    ),
    KnownNoise(
        r"Failed to query Ray Train Controller actor state\. State API may be temporarily unavailable|"
        r"Found multiple active Ray instances: .* Connecting to latest cluster",
        "Ray Train's PlacementGroupCleaner actor polling the State API every few seconds "
        "(ray_connect.CLEANER_ACTOR): on a cluster without a dashboard, or with several Ray instances on "
        "one machine, each poll fails and says so; training is not affected (the cleaner only removes a "
        "dead controller's placement groups)",
    ),
    KnownNoise(
        r"Failed to send resource request for train-\w+\. If this only happens transiently",
        "Ray Train's controller asking the autoscaling coordinator for the workers' resources timed out on "
        "a busy CPU (2-core machine under load); Ray says it is safe to ignore when transient, and the "
        "request is only a hint to an autoscaler: the worker group starts anyway (a run that cannot get "
        "its resources fails in tdn/training/preflight.py before this). Its traceback goes with it",
        traceback=True,
    ),
    KnownNoise(
        r"Requesting resources: \{.*\} \* \d+$|"
        r"Attempting to start training worker group of size \d+ with the following resources: |"
        r"Started training worker group of size \d+: ?$|"
        r"^- \(ip=\S+, pid=\d+\) world_rank=\d+, local_rank=\d+, node_rank=\d+$|"
        r"Setting up process group for: env:// \[rank=\d+, world_size=\d+\]",
        "Ray Train's start-up lines (TrainController and each worker, INFO): the resources it asks for and "
        "the ranks it gave the workers; the job's model line and progress lines follow at once, and a "
        "restart is announced by Ray Train's FailurePolicy lines, which stay",
    ),
    KnownNoise(
        r"Progress bars disabled\. To enable, set `ray\.data\.DataContext",
        "Ray Data's note that the job turned its progress bars off, on purpose: the jobs print their own "
        "progress lines",
    ),
    KnownNoise(
        r"Progress will be logged because stdout is a non-interactive terminal|"
        r"INFO logging_progress\.py:\d+ -- ",
        "Ray Data's progress report when stdout is not a terminal: every 10 s a block of 7 lines (rules of "
        "'=', 'Total Progress: 0/?', resources, one line per operator); the shard and evaluation jobs print "
        "their own progress lines (shards, videos, rate, ETA)",
    ),
    KnownNoise(
        r"INFO streaming_executor\.py:\d+ -- (?:Starting execution of Dataset |Execution plan of Dataset |"
        r".*Dataset \S+ execution finished in )",
        "Ray Data announcing each dataset's execution, its operator plan and its end (INFO): internal names "
        "(dataset_035AP..., TaskPoolMapOperator[Map(write_shard_row)]); the job's own lines say what runs, "
        "and Ray's session folder keeps the full Ray Data log",
    ),
    KnownNoise(
        r"Started a local Ray instance\.",
        "Ray's note that the job started a private Ray for itself (no --address, no RAY_ADDRESS): it lives "
        "only as long as the job; the job's next line says how many CPUs and GPUs it has",
    ),
    KnownNoise(
        r"Token authentication is enabled for this Ray cluster\. Set RAY_AUTH_MODE=disabled to opt out",
        "Ray 2.60 says so whenever a driver starts a local cluster; token auth is its default, not an event",
    ),
    KnownNoise(
        r"INFO mlflow\.store\.db\.utils: (Creating initial MLflow database tables|Updating database tables)",
        "MLflow creating the tables of a new sqlite store (forwarded from the rank-0 worker), once per store",
    ),
    KnownNoise(
        r"INFO mlflow\.system_metrics\.system_metrics_monitor: (Skip logging GPU metrics|Started monitoring "
        r"system metrics|Stopping system metrics monitoring|Successfully terminated system metrics monitoring)",
        "MLflow's INFO lines as its system-metrics thread starts and stops with each training run (4 per run); "
        "the metrics themselves are in the run under system/",
    ),
    KnownNoise(
        r"Found torch version \(\S+\) contains a local version label",
        "MLflow (mlflow.utils.requirements_utils, WARNING) when it writes a logged model's requirements on a "
        "machine with a local torch build (2.13.0+cpu): it already writes torch==2.13.0 without the label, "
        "which is what the registered model should say (a CUDA host installs it)",
    ),
)
_NOISE = [(re.compile(n.pattern), n) for n in KNOWN_NOISE]
_COLOUR = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def match(line: str) -> KnownNoise | None:
    """The KNOWN_NOISE entry ``line`` is, if any."""
    for regex, noise in _NOISE:
        if regex.search(line):
            return noise
    return None


def strip_colour(line: str) -> str:
    return _COLOUR.sub("", line)


class NoiseFilter:
    """The lines of one stream in order: drops KNOWN_NOISE lines and, after a line marked ``traceback``, the
    Python traceback right below it (from "Traceback (most recent call last):" to its exception line)."""

    def __init__(self) -> None:
        self._after_noise = False  # the last line was noise that may carry a traceback
        self._in_traceback = False

    def keep(self, line: str) -> bool:
        if self._in_traceback:
            if line[:1] in (" ", "\t"):
                return False
            self._in_traceback = False  # "ExceptionType: message", the traceback's last line
            return False
        if self._after_noise:
            self._after_noise = False
            if line.startswith("Traceback (most recent call last)"):
                self._in_traceback = True
                return False
        noise = match(line)
        if noise is None:
            return True
        self._after_noise = noise.traceback
        return False
