"""Combine stored evaluations into an ensemble row (the paper's "8+16"), logged as its own evaluation run.

    python jobs/ensemble.py --runs RUN_8F,RUN_16F --out results/ens --tracking-uri http://mlflow:5000

Uses each run's per_video_scores.npz; no inference is re-run. The runs must cover the same shards
(same index checksum) with the same protocol.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # `python jobs/ensemble.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.cli import Job, Shortcut, run
from tdn.evaluation.ensemble import ensemble_runs
from tdn.evaluation.results import DEFAULT_EXPERIMENT


@dataclass
class EnsembleJob:
    runs: list[str] = field(default_factory=list)  # evaluation run ids (--runs A,B)
    weights: list[float] = field(default_factory=list)  # one per run; empty: equal
    out: str = "results/ensemble"  # folder for the ensemble's results files
    tracking_uri: str = ""  # empty: MLFLOW_TRACKING_URI
    experiment: str = DEFAULT_EXPERIMENT  # MLflow experiment of the ensemble's evaluation run


def check(job: EnsembleJob) -> None:
    if not job.runs:
        raise ValueError("--runs (comma-separated evaluation run ids) is required")
    if not (job.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
        raise ValueError("--tracking-uri (or MLFLOW_TRACKING_URI) is required")


# input_errors: ensemble_runs raises ValueError for runs that do not match (other shards, other protocol).
JOB = Job("ensemble", EnsembleJob, __doc__, check=check, input_errors=(ValueError,), shortcuts=(
    Shortcut("--tracking-uri", "tracking_uri"),
))  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(JOB, argv, ensemble)


def ensemble(job: EnsembleJob, args: argparse.Namespace) -> int:
    tracking_uri = job.tracking_uri or os.environ["MLFLOW_TRACKING_URI"]
    result, run_id = ensemble_runs(job.runs, job.out, tracking_uri, job.experiment, job.weights or None)
    print(json.dumps({**result.to_dict(), "run_id": run_id}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
