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
from pathlib import Path

if __package__ in (None, ""):  # `python jobs/ensemble.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tdn.evaluation.ensemble import ensemble_runs
from tdn.evaluation.results import DEFAULT_EXPERIMENT


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", required=True, help="comma-separated evaluation run ids")
    p.add_argument("--weights", default="", help="comma-separated weights (default: equal)")
    p.add_argument("--out", default="results/ensemble")
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", ""))
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT)
    a = p.parse_args(argv)
    runs = [r for r in a.runs.split(",") if r]
    weights = [float(w) for w in a.weights.split(",") if w] or None
    if not a.tracking_uri:
        p.error("--tracking-uri (or MLFLOW_TRACKING_URI) is required")
    try:
        result, run_id = ensemble_runs(runs, a.out, a.tracking_uri, a.experiment, weights)
    except ValueError as exc:
        p.error(str(exc))
    print(json.dumps({**result.to_dict(), "run_id": run_id}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
