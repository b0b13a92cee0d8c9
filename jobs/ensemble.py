"""Combine stored evaluations into an ensemble row (the paper's "8+16"), logged as its own evaluation run.

    python -m jobs.ensemble --runs RUN_8F,RUN_16F --out results/ens --tracking-uri http://mlflow:5000

Uses each run's per_video_scores.npz; no inference is re-run. The runs must cover the same shards
(same index checksum) with the same protocol.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from jobs.cli import Job, finish, run, tracking_uri_flag
from tdn.evaluation.ensemble import ensemble_runs
from tdn.evaluation.results import DEFAULT_EXPERIMENT
from tdn.evaluation.summaries import evaluation_summary
from tdn.tracking.mlflow_store import resolve_tracking_uri, tracking_off


@dataclass
class EnsembleJob:
    runs: list[str] = field(default_factory=list)  # evaluation run ids (--runs A,B)
    weights: list[float] = field(default_factory=list)  # one per run; empty: equal
    out: str = "results/ensemble"  # folder for the ensemble's results files
    tracking_uri: str = ""  # empty: MLFLOW_TRACKING_URI, else the local store sqlite:///mlruns/mlflow.db
    experiment: str = DEFAULT_EXPERIMENT  # MLflow experiment of the ensemble's evaluation run


def check(job: EnsembleJob) -> None:
    if not job.runs:
        raise ValueError("--runs (comma-separated evaluation run ids) is required")
    if tracking_off(job.tracking_uri):
        raise ValueError("--tracking-uri none: the ensemble reads evaluation runs from MLflow; give its URI")


# input_errors: ensemble_runs raises ValueError for runs that do not match (other shards, other protocol).
JOB = Job(
    "ensemble",
    EnsembleJob,
    __doc__,
    check=check,
    input_errors=(ValueError,),
    shortcuts=(tracking_uri_flag(needs_mlflow="it combines evaluation runs and logs one"),),
    summary=True,
)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(JOB, argv, ensemble)


def ensemble(job: EnsembleJob, args: argparse.Namespace) -> int:
    tracking_uri = resolve_tracking_uri(job.tracking_uri)
    result, run_id = ensemble_runs(job.runs, job.out, tracking_uri, job.experiment, job.weights or None)
    finish(evaluation_summary("ensemble", result, job.out, run_id, tracking_uri), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
