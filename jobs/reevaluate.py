"""Re-evaluate registered model versions that have no result on the current evaluation shards.

    python jobs/reevaluate.py --shards s3://bucket/shards/k400/val --protocol k400_10x3 \
        --tracking-uri http://mlflow:5000 [--alias champion] [--models tdn-k400,tsn-k400] [--every 6h]

Evaluates only versions without an evaluation run for the shards' index checksum (running it twice
evaluates nothing new), then refreshes the tables. Each version is evaluated at its own input size and
short side (its checkpoint's training config) unless --eval.input_size / --eval.short_side are given.
--every loops on this machine; on a cluster the schedule lives in infra/. Prints one JSON report per pass.
Exit status 1 if a version failed (single pass).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # `python jobs/reevaluate.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.cli import Job, Option, Shortcut, run
from pipeline.ray_connect import init_ray
from tdn.evaluation.reevaluate import (
    ReevaluateConfig,
    ReevaluateReport,
    parse_interval,
    reevaluate_loop,
    reevaluate_once,
)


def check(cfg: ReevaluateConfig) -> None:
    if cfg.every:
        parse_interval(cfg.every)
    if not cfg.shards:
        raise ValueError("--shards (the evaluation split folder with index.json) is required")


JOB = Job("reevaluate", ReevaluateConfig, __doc__, check=check, shortcuts=(
    Shortcut("--tracking-uri", "tracking_uri"),
    Shortcut("--protocol", "eval.protocol"),
    Shortcut("--replicas", "eval.replicas"),
    Shortcut("--batch-size", "eval.batch_size"),
    Shortcut("--tables-out", "tables_out"),
), options=(
    Option("--address", "Ray cluster address (default: RAY_ADDRESS or local)"),
), ray=True)  # fmt: skip


def _print(report: ReevaluateReport) -> None:
    print(json.dumps(dataclasses.asdict(report)), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(JOB, argv, reevaluate)


def reevaluate(cfg: ReevaluateConfig, args: argparse.Namespace) -> int:
    if cfg.eval.engine == "ray":
        init_ray(args.address)
    if cfg.every:
        reevaluate_loop(cfg, on_report=_print)
        return 0
    report = reevaluate_once(cfg)
    _print(report)
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
