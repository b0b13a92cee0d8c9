"""Decode a dataset's videos into WebDataset shards of pre-sampled TDN views (pipeline/shards/job.py).

    python jobs/shard.py --config jobs/configs/shard_ucf101.yaml --dataset.root data/UCF101 \
        --output s3://bucket/shards/ucf101 [--address ray://... | auto] [--dry-run]
    ray job submit --working-dir . -- python jobs/shard.py --config jobs/configs/shard_ucf101.yaml ...

Every field of ShardConfig is a dotted flag (--train.views 4, --jpeg_quality 85, --dataset.split_number 2).
Prints progress lines, then the summary as JSON. Exit status 1 when more than max_failed_fraction of a
split's videos were quarantined or missing, 2 for a bad configuration. --dry-run writes nothing and prints
one JSON object with listed / found / missing videos per split and the number of classes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # `python jobs/shard.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.cli import Job, JobFailed, Option, run
from pipeline.datasets.common import AnnotationError
from pipeline.shards.job import ShardConfig, dry_run, print_summary, run_shard_job

JOB = Job("shard", ShardConfig, __doc__, options=(
    Option("--dry-run", "count listed/found/missing videos, write nothing", switch=True),
    Option("--address", "Ray cluster address (default: RAY_ADDRESS or local)"),
), input_errors=(AnnotationError,), ray=True)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(JOB, argv, shard)


def shard(cfg: ShardConfig, args: argparse.Namespace) -> int:
    if args.dry_run:
        print(dry_run(cfg).to_json(), flush=True)
        return 0
    summary = run_shard_job(cfg, address=args.address)
    print_summary(summary)
    if not summary.ok:
        raise JobFailed(f"more than {cfg.max_failed_fraction:.1%} of a split's videos failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
