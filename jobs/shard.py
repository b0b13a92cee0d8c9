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
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # `python jobs/shard.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import ConfigError, add_config_arguments, config_from_args
from pipeline.shards.job import ShardConfig, dry_run, print_summary, run_shard_job


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="count listed/found/missing videos, write nothing")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    add_config_arguments(parser, ShardConfig)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(ShardConfig, args)
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    if args.dry_run:
        print(json.dumps(dry_run(cfg), ensure_ascii=False), flush=True)
        return 0
    summary = run_shard_job(cfg, address=args.address)
    print_summary(summary)
    if not summary["ok"]:
        print(f"[shard] failed: more than {cfg.max_failed_fraction:.1%} of a split's videos failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
