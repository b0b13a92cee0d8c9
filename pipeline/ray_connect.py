"""Connecting a job to Ray: the cluster it was submitted to, an address given by the user, or a local one;
and keeping Ray's own chatter off the console unless the user asks for it (``--verbose``).

    jobs/cli.py run(): set_verbose(args.verbose)      (every job that starts Ray has --verbose)
    init_ray(address): quiet_console() -> ray.init -> the driver drops KNOWN_NOISE lines, the rest is printed

Ray prints two kinds of lines on the driver: its own Python logging (logger "ray.*") and the stdout/stderr of
every worker, forwarded by a dispatcher (``log_to_driver``). Both pass through one filter that drops only the
lines of KNOWN_NOISE, each listed with why it carries nothing a user acts on; everything else (errors, failure
decisions and restarts of Ray Train, the project's progress lines) still reaches the console. Ray's log files
(``/tmp/ray/session_latest/logs``) keep every line either way.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownNoise:
    """A line Ray prints that is harmless, and why."""

    pattern: str  # regular expression searched for in each line
    why: str  # why dropping it hides nothing a user needs


KNOWN_NOISE: tuple[KnownNoise, ...] = (
    KnownNoise(
        r"Reporting training result \d+: ",
        "Ray Train (train/v2/_internal/execution/context.py, INFO) echoes every ray.train.report of every rank "
        "with its metrics dict: the numbers of rank 0's epoch line again, once per worker (a 3-epoch, "
        "2-worker quickstart printed each epoch three times)",
    ),
    KnownNoise(
        r"Checkpoint successfully created at: ",
        "Ray Train (INFO) after each reported checkpoint; the kept checkpoints are in the job's final line "
        "and in MLflow",
    ),
    KnownNoise(
        r"Actor with class name: 'PreemptionWatcher' and ID: '\w+' has constructor arguments in the object "
        r"store and max_restarts > 0",
        "an error-level C++ line (core_worker.cc) about Ray Train's own PreemptionWatcher actor, printed at "
        "every training start (ray-project/ray#53727): a remark on how Ray restarts its internal actor, "
        "nothing failed",
    ),
    KnownNoise(
        r"Progress bars disabled\. To enable, set `ray\.data\.DataContext",
        "Ray Data's note that the job turned its progress bars off, on purpose: the jobs print their own "
        "progress lines",
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
)
_NOISE = re.compile("|".join(f"(?:{n.pattern})" for n in KNOWN_NOISE))
_FILTER_NAME = "tdn_known_noise"  # our handler in Ray's forwarded-output dispatcher


@dataclass
class _Console:
    verbose: bool = False  # True: print Ray's KNOWN_NOISE lines as well (--verbose)


_CONSOLE = _Console()


def set_verbose(verbose: bool) -> None:
    """``--verbose``: show Ray's known-harmless lines too (jobs/cli.py calls this before the job runs)."""
    _CONSOLE.verbose = verbose
    if not verbose:
        quiet_console()


def is_noise(line: str) -> bool:
    """Whether ``line`` is one of KNOWN_NOISE and the user did not ask for --verbose."""
    return not _CONSOLE.verbose and _NOISE.search(line) is not None


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not is_noise(record.getMessage())


def _drop_forwarded_noise(data: dict) -> None:
    """First handler of Ray's dispatcher of forwarded worker output: drops noise before Ray prints the rest."""
    if not _CONSOLE.verbose and data.get("lines"):
        data["lines"] = [line for line in data["lines"] if not is_noise(line)]


def quiet_console() -> None:
    """Install the filter on the driver's Ray loggers and on forwarded worker output (idempotent).

    The dispatcher is Ray's private ``ray._private.ray_logging.global_worker_stdstream_dispatcher`` (2.60):
    handlers run in order on the same batch, ours first. If a later Ray moves it, lines are simply not filtered.
    """
    import ray  # noqa: F401  (sets up the "ray" logger and its handler)

    # "ray" and the libraries that configure handlers of their own ("ray.data" at import, propagate False);
    # init_ray calls this again, by when the job has imported the libraries it uses.
    names = [n for n in logging.Logger.manager.loggerDict if n == "ray" or n.startswith("ray.")]
    for handler in {h for n in names for h in logging.getLogger(n).handlers}:
        if not any(isinstance(f, _DropNoise) for f in handler.filters):
            handler.addFilter(_DropNoise())
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:  # pragma: no cover - a Ray without the 2.60 dispatcher
        log.debug("ray: no stdstream dispatcher; forwarded worker lines are not filtered")
        return
    if all(name != _FILTER_NAME for name, _ in dispatcher.handlers):
        with dispatcher._lock:
            dispatcher.handlers = [(_FILTER_NAME, _drop_forwarded_noise), *dispatcher.handlers]


def init_ray(address: str | None = None, **kwargs) -> None:
    """Join the cluster named by ``address`` / RAY_ADDRESS (as ``ray job submit`` sets it), else start a local one.

    Reuses an existing connection, so library functions can be called from a driver that already ran
    ``ray.init`` (tests, notebooks).
    """
    import ray

    quiet_console()
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
