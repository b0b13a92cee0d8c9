"""Fine-tune a Kinetics-pretrained TDN on UCF101 and HMDB51, three official splits each (the paper's Table 4).

    python -m jobs.transfer --config jobs/configs/transfer_k400_r50.yaml --pretrained models:/tdn-k400@champion \
        --data.ucf101_root data/UCF101 --data.hmdb51_root data/HMDB51 --tracking-uri http://mlflow:5000
    python -m jobs.transfer --official-checkpoint TDN_k400_R50_8f.pth.tar --arch resnet50 ...

The released recipe is the default (16 segments, lr 0.002 for a batch of 128, steps 10/20, 25 epochs,
dropout 0.8, new classifier). Each split: shard job -> Ray Train run -> evaluation of the test list. One
parent MLflow run with a child run per split; ends with the mean top-1 per dataset, each split's top-1 and
checkpoint and the parent run's page (--json: the TransferReport as one JSON line).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from jobs.cli import Job, Option, Shortcut, finish, run, tracking_uri_flag
from tdn.evaluation.summaries import transfer_summary
from tdn.evaluation.transfer import RESULTS_FILE, TransferConfig, run_transfer


def check(cfg: TransferConfig) -> None:
    cfg.pretrained.check()
    cfg.tracking()  # --tracking-uri none: an InputError (the split runs nest under one MLflow run)


JOB = Job(
    "transfer",
    TransferConfig,
    __doc__,
    check=check,
    shortcuts=(
        Shortcut("--pretrained", "pretrained.uri"),
        Shortcut("--checkpoint", "pretrained.uri"),
        Shortcut("--ucf101", "data.ucf101_root"),
        Shortcut("--hmdb51", "data.hmdb51_root"),
        Shortcut("--official-checkpoint", "pretrained.official"),
        Shortcut("--arch", "pretrained.arch"),
        Shortcut("--segments", "num_segments"),
        Shortcut("--workers", "run.workers"),
        tracking_uri_flag(needs_mlflow="its per-split runs nest under one MLflow run"),
    ),
    options=(Option("--address", "Ray cluster address (default: RAY_ADDRESS or local)"),),
    ray=True,
    summary=True,
)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(JOB, argv, transfer)


def transfer(cfg: TransferConfig, args: argparse.Namespace) -> int:
    report = run_transfer(cfg, address=args.address)
    results = str(Path(cfg.work_dir) / RESULTS_FILE)
    finish(transfer_summary(report, results, cfg.tracking()), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
