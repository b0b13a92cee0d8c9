"""Build the paper-style tables (Tables 2-5 layouts) from the evaluation runs in MLflow.

    python jobs/tables.py --tracking-uri http://mlflow:5000 --out results/tables [--with-paper]

Writes <table>.md/.csv/.html plus tables.md and tables.html into --out and logs them as artifacts of a run
tagged tdn.kind=tables (experiment "tdn-tables"). Nothing is typed by hand: every number of ours comes from
a run tagged tdn.kind=evaluation; --with-paper adds the published rows, marked "(paper)".
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # `python jobs/tables.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.cli import Job, Shortcut, run
from tdn.reporting.tables import refresh_tables
from tdn.tracking.mlflow_store import resolve_tracking_uri


@dataclass
class TablesJob:
    tracking_uri: str = ""  # empty: MLFLOW_TRACKING_URI, else the local default store
    out: str = "results/tables"  # folder for the .md/.csv/.html files
    with_paper: bool = False  # add the paper's published rows, marked (paper)
    log: bool = True  # false: write the files only, log no MLflow run


JOB = Job("tables", TablesJob, __doc__, shortcuts=(
    Shortcut("--tracking-uri", "tracking_uri"),
    Shortcut("--with-paper", "with_paper", const="true", help="add the paper's rows, marked (paper)"),
    Shortcut("--no-log", "log", const="false", help="write the files only, log no MLflow run"),
))  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(JOB, argv, tables)


def tables(job: TablesJob, args: argparse.Namespace) -> int:
    tracking_uri = resolve_tracking_uri(job.tracking_uri)
    built, run_id = refresh_tables(tracking_uri, job.out, job.with_paper, log_run=job.log)
    rows = sum(len(t.rows) for t in built)
    print(json.dumps({"out": job.out, "tables": [t.name for t in built], "rows": rows, "run_id": run_id}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
