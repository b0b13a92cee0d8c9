"""Fine-tune a Kinetics-pretrained TDN on UCF101 and HMDB51, three official splits each (the paper's Table 4).

    python jobs/transfer.py --config jobs/configs/transfer_k400_r50.yaml --pretrained models:/tdn-k400@champion \
        --data.ucf101_root data/UCF101 --data.hmdb51_root data/HMDB51 --tracking-uri http://mlflow:5000
    python jobs/transfer.py --official-checkpoint TDN_k400_R50_8f.pth.tar --arch resnet50 ...

The released recipe is the default (16 segments, lr 0.002 for a batch of 128, steps 10/20, 25 epochs,
dropout 0.8, new classifier). Each split: shard job -> Ray Train run -> evaluation of the test list. One
parent MLflow run with a child run per split; prints the per-split and mean top-1 as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # `python jobs/transfer.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.cli import Job, Option, Shortcut, run
from tdn.evaluation.transfer import TransferConfig, run_transfer

JOB = Job("transfer", TransferConfig, __doc__, check=lambda cfg: cfg.pretrained.check(), shortcuts=(
    Shortcut("--pretrained", "pretrained.uri"),
    Shortcut("--checkpoint", "pretrained.uri"),
    Shortcut("--ucf101", "data.ucf101_root"),
    Shortcut("--hmdb51", "data.hmdb51_root"),
    Shortcut("--official-checkpoint", "pretrained.official"),
    Shortcut("--arch", "pretrained.arch"),
    Shortcut("--segments", "num_segments"),
    Shortcut("--workers", "run.workers"),
    Shortcut("--tracking-uri", "tracking_uri"),
), options=(
    Option("--address", "Ray cluster address (default: RAY_ADDRESS or local)"),
), ray=True)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(JOB, argv, transfer)


def transfer(cfg: TransferConfig, args: argparse.Namespace) -> int:
    report = run_transfer(cfg, address=args.address)
    print(json.dumps(dataclasses.asdict(report)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
