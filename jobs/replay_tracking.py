"""Send the MLflow calls a training run could not send (its journal) to MLflow now, each exactly once.

    python jobs/replay_tracking.py ray_results/<run name>/mlflow-journal/journal.jsonl [--tracking-uri URI]

When the tracking server was still unreachable ``tracking.flush_timeout_s`` after training ended, jobs/train.py
kept the unsent calls (last metrics, artifacts, the model registration, the run's final status) in a journal
beside the checkpoints, printed its path and exited 1. This sends them, in order, to the recorded tracking URI
(or ``--tracking-uri``), skipping whatever already arrived, so running it twice, or again after it was cut
short, logs nothing twice; the run ends with the status the training recorded. Prints the run id, the number
of calls and the run's status as JSON. Exit status 2 for a missing or malformed journal, 1 when MLflow cannot
be reached (nothing is lost: run it again later).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # `python jobs/replay_tracking.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.cli import Job, JobFailed, Option, Shortcut, run
from tdn.tracking.journal import replay_journal


@dataclass
class ReplayJob:
    tracking_uri: str = ""  # empty: the tracking URI the journal recorded


JOB = Job("replay_tracking", ReplayJob, __doc__, shortcuts=(
    Shortcut("--tracking-uri", "tracking_uri", help="send to this tracking URI instead of the recorded one"),
), options=(
    Option("journal", "the journal.jsonl a training run wrote (local path or s3:// URI)"),
), input_errors=(ValueError,))  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(JOB, argv, replay)


def replay(job: ReplayJob, args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    # fail within seconds when the server is still down, instead of MLflow's minutes of retries
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
    saved = {k: os.environ.get(k) for k in quick}
    os.environ.update({k: v for k, v in quick.items() if saved[k] is None})
    try:
        report = replay_journal(args.journal, job.tracking_uri)
    except (MlflowException, ConnectionError) as exc:
        raise JobFailed(
            f"MLflow did not take the calls ({exc}); nothing is lost, run this again later"
        ) from exc
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
    print(json.dumps({"run_id": report.run_id, "operations": report.operations, "status": report.status}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
