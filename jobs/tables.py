"""Build the paper-style tables (Tables 2-5 layouts) from the evaluation runs in MLflow.

    python -m jobs.tables --tracking-uri http://mlflow:5000 --out results/tables [--with-paper]

Writes <table>.md/.csv/.html plus tables.md and tables.html into --out and logs them as artifacts of a run
tagged tdn.kind=tables (experiment "tdn-tables"). Nothing is typed by hand: every number of ours comes from
a run tagged tdn.kind=evaluation; --with-paper adds the published rows, marked "(paper)".
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from jobs.cli import Job, Shortcut, finish, run, tracking_uri_flag
from tdn.evaluation.summaries import tables_summary
from tdn.evaluation.table_runs import refresh_tables
from tdn.tracking.mlflow_store import resolve_tracking_uri


@dataclass
class TablesJob:
    tracking_uri: str = ""  # empty: MLFLOW_TRACKING_URI, else the local default store
    out: str = "results/tables"  # folder for the .md/.csv/.html files
    with_paper: bool = False  # add the paper's published rows, marked (paper)
    log: bool = True  # false: write the files only, log no MLflow run


JOB = Job(
    "tables",
    TablesJob,
    __doc__,
    shortcuts=(
        tracking_uri_flag(needs_mlflow="the tables are built from the evaluation runs in MLflow"),
        Shortcut("--with-paper", "with_paper", const="true", help="add the paper's rows, marked (paper)"),
        Shortcut("--no-log", "log", const="false", help="write the files only, log no MLflow run"),
    ),
    summary=True,
)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(JOB, argv, tables)


def tables(job: TablesJob, args: argparse.Namespace) -> int:
    tracking_uri = resolve_tracking_uri(job.tracking_uri)
    built, run_id = refresh_tables(tracking_uri, job.out, job.with_paper, log_run=job.log)
    finish(tables_summary(built, job.out, run_id, tracking_uri), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
