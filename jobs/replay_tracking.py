"""Send the MLflow calls a training run could not send (its journal) to MLflow now, each exactly once.

    python -m jobs.replay_tracking ray_results/<run name>/mlflow-journal/journal.jsonl [--tracking-uri URI]

When the tracking server was still unreachable ``tracking.flush_timeout_s`` after training ended, jobs/train.py
kept the unsent calls (last metrics, artifacts, the model registration, the run's final status) in a journal
beside the checkpoints, printed its path and exited 1. This sends them, in order, to the recorded tracking URI
(or ``--tracking-uri``), skipping whatever already arrived, so running it twice, or again after it was cut
short, logs nothing twice; the run ends with the status the training recorded. Prints the number of calls,
the run's status and its MLflow page (--json: run id, calls and status as one JSON line). Exit status 2 for a missing or malformed journal, 1 when MLflow cannot
be reached (nothing is lost: run it again later).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from jobs.cli import Job, JobFailed, Option, Shortcut, finish, run
from pipeline.summary import Item, Summary
from tdn.tracking.journal import read_journal, replay_journal
from tdn.tracking.links import run_link, ui_items
from tdn.tracking.mlflow_store import tracking_off


@dataclass
class ReplayJob:
    tracking_uri: str = (
        ""  # empty: the tracking URI the journal recorded (none is refused: nothing to send to)
    )


def check_replay(job: ReplayJob) -> None:
    if tracking_off(job.tracking_uri):
        raise ValueError(
            "--tracking-uri none: a replay sends the journal to MLflow; give a URI, or leave it empty for the "
            "one the journal recorded"
        )


JOB = Job(
    "replay_tracking",
    ReplayJob,
    __doc__,
    shortcuts=(
        Shortcut(
            "--tracking-uri", "tracking_uri", help="send to this tracking URI instead of the recorded one"
        ),
    ),
    options=(Option("journal", "the journal.jsonl a training run wrote (local path or s3:// URI)"),),
    input_errors=(ValueError,),
    check=check_replay,
    summary=True,
)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(JOB, argv, replay)


def replay(job: ReplayJob, args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException  # here: --help and bad flags need no mlflow (~2 s CPU)

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
    data = {"run_id": report.run_id, "operations": report.operations, "status": report.status}
    tracking = job.tracking_uri or read_journal(args.journal).header.tracking_uri
    headline = f"{report.operations} call(s) sent to run {report.run_id}, now {report.status}"
    items = (Item("MLflow run", run_link(tracking, report.run_id)), *ui_items(tracking))
    finish(Summary("replay_tracking", headline, items, data), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
