"""The benchmark tables' MLflow side: every evaluation run in, one tables run out.

load_evaluations(uri)   runs tagged tdn.kind=evaluation (FINISHED) -> [Evaluation]
refresh_tables(uri, out)  load_evaluations -> tables.build_tables -> tables.write_tables -> log_tables
log_tables(files, ...)  a run tagged tdn.kind=tables holding the files under artifacts/tables/
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from tdn.evaluation.results import result_from_run
from tdn.evaluation.tables import TABLES_EXPERIMENT, Evaluation, Table, build_tables, write_tables
from tdn.tracking import mlflow_store
from tdn.tracking.lineage import source_tags
from tdn.tracking.mlflow_store import DESCRIPTION_TAG, KIND_EVALUATION, KIND_TABLES, KIND_TAG

log = logging.getLogger(__name__)


def load_evaluations(tracking_uri: str | None = None) -> list[Evaluation]:
    """Every FINISHED evaluation run in every experiment of the tracking server."""
    runs = mlflow_store.search_runs_everywhere(
        mlflow_store.tracking_client(tracking_uri),
        f"tags.`{KIND_TAG}` = '{KIND_EVALUATION}' and attributes.status = 'FINISHED'",
    )
    return [
        Evaluation(run.info.run_id, int(run.info.start_time or 0), result_from_run(run), dict(run.data.tags))
        for run in runs
    ]


def log_tables(
    files: Sequence[Path], tracking_uri: str | None, tables: Sequence[Table], num_runs: int
) -> str:
    """A run tagged tdn.kind=tables holding the files under artifacts/tables/, its description naming the
    tables and where their numbers come from; returns its id."""
    client = mlflow_store.tracking_client(tracking_uri)
    filled = [f"{t.title} ({len(t.rows)} rows)" for t in tables if t.rows]
    about = "\n".join(
        [
            f"The paper-style tables, built from the {num_runs} FINISHED evaluation runs (tag "
            f"`{KIND_TAG}={KIND_EVALUATION}`) of this tracking server: no number is typed by hand; rows marked "
            "(paper) are the published ones (`--with-paper`).",
            "",
            *(f"- {line}" for line in filled or ["no table has rows yet"]),
            "",
            "Artifacts -> `tables/`: `tables.md`, `tables.html` and each table as .md/.csv/.html.",
        ]
    )
    tags = {**source_tags(), KIND_TAG: KIND_TABLES, DESCRIPTION_TAG: about}
    with mlflow_store.logged_run(client, TABLES_EXPERIMENT, "tables", tags) as run:
        run.log(params={"evaluation_runs": num_runs})
        for f in files:
            run.log_artifact(str(f), "tables")
    return run.run_id


def refresh_tables(
    tracking_uri: str | None, out_dir: str | os.PathLike, with_paper: bool = False, log_run: bool = True
) -> tuple[list[Table], str]:
    """Load every evaluation run, write the tables to ``out_dir`` and log them; returns (tables, run id)."""
    evals = load_evaluations(tracking_uri)
    tables = build_tables(evals, with_paper)
    files = write_tables(tables, out_dir)
    run_id = log_tables(files, tracking_uri, tables, len(evals)) if log_run else ""
    log.info("tables: %d evaluation runs -> %s", len(evals), out_dir)
    return tables, run_id
