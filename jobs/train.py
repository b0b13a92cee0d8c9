"""Train TDN with Ray Train (DDP) from WebDataset shards; checkpoints to local/S3 storage, metrics to MLflow.

    python jobs/train.py --config jobs/configs/ssv1_r50_8f.yaml --data.shards s3://bucket/shards/ssv1 \
        --workers 8 --gpus [--optim.lr 0.02 --model.dropout 0.8 ...] [--resume CHECKPOINT] [--address auto]
    ray job submit --working-dir . -- python jobs/train.py --config jobs/configs/k400_r50_8f.yaml ...

Every field of TrainConfig is a dotted flag. ``--workers``/``--gpus``/``--resume``/``--name``/``--tracking-uri``
are shortcuts for ``--run.workers``, ``--run.use_gpu true``, ``--run.resume``, ``--run.name``,
``--tracking.uri``. The learning rate in a recipe is for ``optim.reference_batch`` samples per step and is
scaled linearly to ``loader.batch_size * workers``. Prints a progress line with ETAs every N steps and a
summary per epoch, then the final metrics and the last and best checkpoints' locations as JSON. Exit
status 2 for a bad configuration, 1 if training failed or if MLflow calls could not be sent (they are kept
in a journal beside the checkpoints; jobs/replay_tracking.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # `python jobs/train.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ray.train

from jobs.cli import Job, JobFailed, Option, Shortcut, run
from tdn.tracking.journal import pending_operations
from tdn.training.config import TrainConfig
from tdn.training.launcher import best_checkpoint, fit, tracking_journal

JOB = Job("train", TrainConfig, __doc__, shortcuts=(
    Shortcut("--workers", "run.workers", help="number of DDP workers (= --run.workers)"),
    Shortcut("--gpus", "run.use_gpu", const="true", help="one GPU per worker (= --run.use_gpu true)"),
    Shortcut("--resume", "run.resume", help="checkpoint file/folder to continue from (= --run.resume)"),
    Shortcut("--name", "run.name", help="run name; the same name again resumes it (= --run.name)"),
    Shortcut("--tracking-uri", "tracking.uri", help="MLflow tracking URI (= --tracking.uri)"),
), options=(
    Option("--address", "Ray cluster address (default: RAY_ADDRESS or local)"),
), input_errors=(ValueError,), ray=True)  # fmt: skip
# input_errors: fit() checks the data and the initial weights before starting workers (missing shards, a
# weights file that does not fit the model) and raises ValueError / FileNotFoundError for them.


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(JOB, argv, train)


def train(cfg: TrainConfig, args: argparse.Namespace) -> int:
    try:
        result = fit(cfg, address=args.address)
    except ray.train.TrainingFailedError as exc:  # restarts (run.max_failures) used up
        raise JobFailed(str(exc)) from exc
    if result.error is not None:
        raise JobFailed(str(result.error))
    checkpoint = result.checkpoint.path if result.checkpoint is not None else None  # the last: resume from it
    best = best_checkpoint(cfg, result)  # by checkpoint.monitor: the registered one
    print(json.dumps({"metrics": result.metrics, "checkpoint": checkpoint,
                      "best_checkpoint": best.path if best is not None else None, "path": result.path},
                     default=str))  # fmt: skip
    journal = tracking_journal(cfg, result)
    pending = pending_operations(journal)
    if pending:  # the tracking server was down when training ended: nothing is lost, but it is not in MLflow
        raise JobFailed(
            f"{pending} MLflow call(s) (metrics, artifacts, model registration, run status) were not "
            f"sent; they are kept in {journal}: send them with python jobs/replay_tracking.py {journal}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
