"""Re-evaluate registered model versions that have no result on the current evaluation shards.

    python -m jobs.reevaluate --shards s3://bucket/shards/k400/val --protocol k400_10x3 \
        --tracking-uri http://mlflow:5000 [--alias champion] [--models tdn-k400,tsn-k400] [--every 6h]

Evaluates only versions without an evaluation run for the shards' index checksum (running it twice
evaluates nothing new), then refreshes the tables. Each version is evaluated at its own input size and
short side (its checkpoint's training config) unless --eval.input_size / --eval.short_side are given.
--every loops on this machine; on a cluster the schedule lives in infra/. Prints a summary per pass (the
versions evaluated, with their MLflow runs; --json: one JSON report per pass). Exit status 1 if a version
failed (single pass).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from jobs.cli import Job, Option, Shortcut, finish, run, tracking_uri_flag
from pipeline.ray_connect import init_ray
from tdn.evaluation.reevaluate import (
    ReevaluateConfig,
    ReevaluateReport,
    parse_interval,
    reevaluate_loop,
    reevaluate_once,
)
from tdn.evaluation.summaries import reevaluate_summary
from tdn.tracking.mlflow_store import resolve_tracking_uri


def check(cfg: ReevaluateConfig) -> None:
    if cfg.every:
        parse_interval(cfg.every)
    if not cfg.shards:
        raise ValueError("--shards (the evaluation split folder with index.json) is required")
    resolve_tracking_uri(cfg.tracking_uri)  # none: an InputError (reevaluation reads the registry)


JOB = Job(
    "reevaluate",
    ReevaluateConfig,
    __doc__,
    check=check,
    shortcuts=(
        tracking_uri_flag(needs_mlflow="it evaluates the registered versions and logs their runs"),
        Shortcut("--protocol", "eval.protocol"),
        Shortcut("--replicas", "eval.replicas"),
        Shortcut("--batch-size", "eval.batch_size"),
        Shortcut("--tables-out", "tables_out"),
    ),
    options=(Option("--address", "Ray cluster address (default: RAY_ADDRESS or local)"),),
    ray=True,
    summary=True,
)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(JOB, argv, reevaluate)


def reevaluate(cfg: ReevaluateConfig, args: argparse.Namespace) -> int:
    if cfg.eval.engine == "ray":
        init_ray(args.address)
    tracking = resolve_tracking_uri(cfg.tracking_uri)

    def show(report: ReevaluateReport) -> None:
        finish(reevaluate_summary(report, tracking), args)

    if cfg.every:
        reevaluate_loop(cfg, on_report=show)
        return 0
    report = reevaluate_once(cfg)
    show(report)
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
