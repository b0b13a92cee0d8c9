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
import os
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # `python jobs/tables.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tdn.reporting.tables import refresh_tables
from tdn.tracking.tracker import DEFAULT_TRACKING_URI


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI)
    p.add_argument("--out", default="results/tables", help="folder for the .md/.csv/.html files")
    p.add_argument("--with-paper", action="store_true", help="add the paper's published rows, marked (paper)")
    p.add_argument("--no-log", action="store_true", help="write the files only, log no MLflow run")
    a = p.parse_args(argv)
    tables, run_id = refresh_tables(a.tracking_uri, a.out, a.with_paper, log_run=not a.no_log)
    print(json.dumps({"out": a.out, "tables": [t.name for t in tables], "rows": sum(len(t.rows) for t in tables),
                      "run_id": run_id}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
