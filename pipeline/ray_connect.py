"""Connecting a job to Ray: the cluster it was submitted to, an address given by the user, or a local one;
and keeping Ray's own chatter off the console unless the user asks for it (``--verbose``).

    jobs/cli.py run(): set_verbose(args.verbose, own_stderr)   (every job that starts Ray has --verbose)
    init_ray(address): quiet_console() -> ray.init -> the driver drops KNOWN_NOISE lines, the rest is printed

Ray prints three kinds of lines on the driver: its own Python logging (loggers "ray.*", Ray Data's with
handlers of their own), the stdout/stderr of every worker, forwarded by a dispatcher (``log_to_driver``), and
what its C++ core writes straight to the driver's stderr. All pass through one filter that drops only the
lines of pipeline/ray_noise.py's KNOWN_NOISE, each listed with why it carries nothing a user acts on;
everything else (errors, failure decisions and restarts of Ray Train, the project's progress lines) still
reaches the console. Ray's log files (``/tmp/ray/session_latest/logs``) keep every line either way.

Not a terminal (a log file, a pipe): no colour codes (Ray's ``RAY_COLOR_PREFIX=0``, and any left in a line
are stripped), one line per progress report. A terminal: training's progress lines are drawn as one live
bar (rewritten in place) that the next other line replaces.

The C++ lines need the file descriptor: only a process that is the job itself (``own_stderr``, a job run
from its command line) routes its fd 2 through pipeline/stderr_filter.py.

``ray`` is imported inside the functions: jobs/cli.py imports this module for every job, and jobs that never
start Ray (``--help``, ``--print-config``, tables, capacity) should not pay for importing it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.ray_noise import NoiseFilter, match, strip_colour
from pipeline.stderr_filter import StderrFilter

log = logging.getLogger(__name__)


# Ray Train 2.60's PlacementGroupCleaner actor asks the State API whether the controller lives, at an
# address it finds on its own: with several Ray instances on one machine (tests, a laptop with another job)
# it picks the newest, on a cluster without a dashboard it finds none; it then prints "Found multiple active
# Ray instances" / "Failed to query Ray Train Controller actor state" every few seconds and, when the job
# ends, a ConnectionError traceback from its thread. Its only job is removing the placement groups of a
# controller that died (Ray removes a finished job's anyway); none of its lines is something a user can act
# on, so the driver drops them all (--verbose shows them). init_ray also points it at the right cluster when
# the job was given an address (RAY_ADDRESS in the job's env).
CLEANER_ACTOR = "PlacementGroupCleaner"


# A progress line of tdn/training/progress.py, which a terminal shows as one live bar.
_PROGRESS = re.compile(r"^epoch \d+/\d+ +\d+% step \d+/\d+ \|")
_FILTER_NAME = "tdn_known_noise"  # our handler in Ray's forwarded-output dispatcher


@dataclass
class _Console:
    verbose: bool = False  # True: print Ray's KNOWN_NOISE lines as well (--verbose)
    own_stderr: bool = False  # this process is the job: its file descriptor 2 is filtered too
    bar_open: bool = False  # a live progress bar is on the terminal without its newline
    streams: dict[tuple[str, bool], NoiseFilter] = field(default_factory=dict)  # (pid, is_err) -> filter
    stderr: StderrFilter | None = None
    last_forwarded: float = 0.0  # time.monotonic() of the last batch of worker output


_CONSOLE = _Console()


def set_verbose(verbose: bool, own_stderr: bool = False) -> None:
    """``--verbose``: show Ray's known-harmless lines too; ``own_stderr``: the process is the job (jobs/cli.py
    calls this before the job runs), so init_ray filters its stderr file descriptor as well."""
    _CONSOLE.verbose = verbose
    _CONSOLE.own_stderr = own_stderr
    quiet_console()


def is_noise(line: str) -> bool:
    """Whether ``line`` is one of KNOWN_NOISE and the user did not ask for --verbose."""
    return not _CONSOLE.verbose and match(line) is not None


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no stream, or a closed one
        return False


class _DropNoise(logging.Filter):
    """On one handler of Ray's (or MLflow's) loggers: drops KNOWN_NOISE records, and takes the colour codes
    out of the others when the handler does not write to a terminal (Ray colours its dashboard address)."""

    def __init__(self, handler: logging.Handler) -> None:
        super().__init__()
        self.handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not _is_terminal(getattr(self.handler, "stream", None)) and "\x1b[" in message:
            record.msg, record.args, message = strip_colour(message), None, strip_colour(message)
        # Matched as Ray's and MLflow's formatters print it: Ray Data's progress lines say nothing else
        shapes = (
            f"{record.levelname} {record.filename}:{record.lineno} -- {message}",
            f"{record.levelname} {record.name}: {message}",
        )
        return not any(is_noise(shape) for shape in shapes)


def _forwarded(data: dict) -> None:
    """First handler of Ray's dispatcher of forwarded worker output, before Ray prints the batch: drops noise
    (and tracebacks that belong to it), strips colours off a log file, and draws progress lines as a live bar
    on a terminal."""
    lines = data.get("lines")
    if not lines:
        return
    _CONSOLE.last_forwarded = time.monotonic()
    terminal = _is_terminal(sys.stdout)
    if not terminal:
        lines = [strip_colour(line) for line in lines]
    if not _CONSOLE.verbose:
        if data.get("actor_name") == CLEANER_ACTOR:
            lines = []
        stream = _CONSOLE.streams.setdefault((str(data.get("pid")), bool(data.get("is_err"))), NoiseFilter())
        lines = [line for line in lines if stream.keep(line)]
    if terminal and not data.get("is_err"):
        lines = _live_bar(data, lines)
    data["lines"] = lines


def _live_bar(data: dict, lines: list[str]) -> list[str]:
    """On a terminal: a batch's last line, when it is a progress line, is drawn in place of the previous one
    (carriage return); progress lines with others after them are superseded. Returns what Ray prints, after
    the bar was cleared for it (Ray prints the batch after this handler returns, so the bar can only close)."""
    progress = bool(lines) and _PROGRESS.search(lines[-1]) is not None
    rest = [line for line in lines if not _PROGRESS.search(line)]
    if _CONSOLE.bar_open and (rest or progress):
        sys.stdout.write("\r\x1b[K")
        _CONSOLE.bar_open = False
    if progress and not rest:
        who = data.get("actor_name") or data.get("task_name") or ""
        sys.stdout.write(
            f"\x1b[36m({who + ' ' if who else ''}pid={data.get('pid')})\x1b[0m {lines[-1]}\x1b[K"
        )
        sys.stdout.flush()
        _CONSOLE.bar_open = True
    return rest


def _stderr_line(line: str) -> str | None:
    """One line of the job process's own stderr (pipeline/stderr_filter.py): None drops it."""
    filt = _CONSOLE.stderr
    if filt is not None and not filt.original_is_terminal:
        line = strip_colour(line)
    if _CONSOLE.verbose:
        return line
    return line if _CONSOLE.streams.setdefault(("driver", True), NoiseFilter()).keep(line) else None


def quiet_console() -> None:
    """Install the filters on the driver's Ray, Ray Data and MLflow log handlers and on forwarded worker
    output (idempotent), and turn Ray's colour prefixes off when stdout is not a terminal.

    The dispatcher is Ray's private ``ray._private.ray_logging.global_worker_stdstream_dispatcher`` (2.60):
    handlers run in order on the same batch, ours first. If a later Ray moves it, lines are simply not filtered.
    """
    import ray  # noqa: F401  (sets up the "ray" logger and its handler)

    if not _is_terminal(sys.stdout):
        # Ray wraps each forwarded line's "(RayTrainWorker pid=...)" in ESC[36m...ESC[0m unless this is 0;
        # it reads the variable on the driver as it prints (ray/_private/worker.py print_worker_logs)
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    # "ray" and the libraries that configure handlers of their own ("ray.data" at import, propagate False);
    # init_ray calls this again, by when the job has imported the libraries it uses.
    names = [""] + [
        n
        for n in logging.Logger.manager.loggerDict
        if n in ("ray", "mlflow") or n.startswith(("ray.", "mlflow."))
    ]
    for handler in {h for n in names for h in logging.getLogger(n).handlers}:
        if not any(isinstance(f, _DropNoise) for f in handler.filters):
            handler.addFilter(_DropNoise(handler))
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:  # pragma: no cover - a Ray without the 2.60 dispatcher
        log.debug("ray: no stdstream dispatcher; forwarded worker lines are not filtered")
        return
    if all(name != _FILTER_NAME for name, _ in dispatcher.handlers):
        with dispatcher._lock:
            dispatcher.handlers = [(_FILTER_NAME, _forwarded), *dispatcher.handlers]


def settle(quiet_s: float = 1.5, limit_s: float = 10.0) -> None:
    """Wait until no worker output was forwarded for ``quiet_s`` (at most ``limit_s``), so that what the
    workers printed before the job's result reaches the console before the job's last lines: Ray's log
    monitor forwards a worker's lines 0.1 s to several seconds late on a busy machine (a training run's
    "mlflow: registered ..." came after the job's summary on the 2-core machine). No-op without Ray."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        if time.monotonic() - max(_CONSOLE.last_forwarded, start) >= quiet_s:
            return
        time.sleep(0.05)


def _filter_own_stderr() -> None:
    """The job process's stderr file descriptor through the same filter (Ray's C++ core writes there)."""
    if _CONSOLE.own_stderr and _CONSOLE.stderr is None:
        _CONSOLE.stderr = StderrFilter(_stderr_line)
        _CONSOLE.stderr.start()


def init_ray(address: str | None = None, **kwargs) -> None:
    """Join the cluster named by ``address`` / RAY_ADDRESS (as ``ray job submit`` sets it), else start a local one.

    Reuses an existing connection, so library functions can be called from a driver that already ran
    ``ray.init`` (tests, notebooks).
    """
    import ray
    import ray.data  # noqa: F401  (Ray Data sets up its log handlers at import: filtered from here on)

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
    if address not in ("local", "auto"):
        # the job's actors that look the cluster up by themselves (CLEANER_ACTOR) find this one
        runtime_env = dict(kwargs.pop("runtime_env", None) or {})
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), "RAY_ADDRESS": address}
        kwargs["runtime_env"] = runtime_env
    ray.init(address=address, log_to_driver=True, **kwargs)
    _filter_own_stderr()
    resources = ray.cluster_resources()
    log.info(
        "ray: %d node(s), %s CPU, %s GPU", len(ray.nodes()), resources.get("CPU", 0), resources.get("GPU", 0)
    )
