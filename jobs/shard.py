"""Decode a dataset's videos into WebDataset shards of pre-sampled TDN views (pipeline/shards/job.py).

    python -m jobs.shard --config jobs/configs/shard_ucf101.yaml --dataset.root data/UCF101 \
        --output s3://bucket/shards/ucf101 [--address ray://... | auto] [--dry-run]
    ray job submit --working-dir . -- python -m jobs.shard --config jobs/configs/shard_ucf101.yaml ...

Every field of ShardConfig is a dotted flag (--train.views 4, --jpeg-quality 85, --dataset.split_number 2; top-level fields take hyphens, the underscore spelling is read too).
Prints progress lines, then a summary (videos, shards and samples per split, where they are; --json: the
ShardJobSummary as one JSON line). Exit status 1 when more than max_failed_fraction of a split's videos were
quarantined or missing, 2 for a bad configuration. --dry-run writes nothing and says how many videos each
split lists, finds and misses, and the number of classes (--json: the DryRunReport).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from jobs.cli import Job, JobFailed, Option, finish, run
from pipeline import storage
from pipeline.datasets.common import AnnotationError
from pipeline.shards.contract import DryRunReport, ShardJobSummary
from pipeline.shards.job import ShardConfig, dry_run, run_shard_job
from pipeline.summary import DONE, INCOMPLETE, Item, Summary

JOB = Job(
    "shard",
    ShardConfig,
    __doc__,
    options=(
        Option("--dry-run", "count listed/found/missing videos, write nothing", switch=True),
        Option("--address", "Ray cluster address (default: RAY_ADDRESS or local)"),
    ),
    input_errors=(AnnotationError,),
    ray=True,
    summary=True,
)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(JOB, argv, shard)


def shard(cfg: ShardConfig, args: argparse.Namespace) -> int:
    if args.dry_run:
        finish(dry_run_summary(dry_run(cfg)), args)
        return 0
    summary = run_shard_job(cfg, address=args.address)
    finish(job_summary(summary), args)
    if not summary.ok:
        raise JobFailed(f"more than {cfg.max_failed_fraction:.1%} of a split's videos failed")
    return 0


def job_summary(s: ShardJobSummary) -> Summary:
    listed = sum(v.listed for v in s.splits.values())
    videos = sum(v.videos for v in s.splits.values())
    quarantined = sum(v.quarantined for v in s.splits.values())
    items = [
        Item(
            f"{split}/",
            f"{v.videos} videos, {v.samples} samples in {v.shards} shards ({v.shards_already_done} already done), "
            f"{v.quarantined} quarantined, index checksum {v.checksum[:12]}",
        )
        for split, v in s.splits.items()
    ]
    items.append(Item("output", s.output))
    bad = [split for split, v in s.splits.items() if v.quarantined]
    if bad:
        items.append(
            Item(
                "quarantine",
                ", ".join(storage.join(s.output, b, "quarantine.jsonl") for b in bad) + " (why each)",
            )
        )
    return Summary(
        "shard",
        f"{s.dataset}: {videos} of {listed} listed videos sharded, {quarantined} quarantined, in {s.seconds:.0f} s "
        f"({s.videos_per_s:.1f} videos/s)",
        tuple(items),
        data=s.to_dict(),
        status=DONE if s.ok else INCOMPLETE,
    )


def dry_run_summary(r: DryRunReport) -> Summary:
    items = [
        Item(f"{split}/", f"{v.listed} listed, {v.found} found, {v.missing} missing")
        for split, v in r.splits.items()
    ]
    if r.empty_classes:
        items.append(Item("no training video", ", ".join(r.empty_classes)))
    return Summary(
        "shard",
        f"dry run of {r.dataset}: {r.num_classes} classes, nothing written",
        tuple(items),
        r.to_dict(),
    )


if __name__ == "__main__":
    sys.exit(main())
