"""Train TDN with Ray Train (DDP) from WebDataset shards; checkpoints to local/S3 storage, metrics to MLflow.

    python -m jobs.train --config jobs/configs/ssv1_r50_8f.yaml --data.shards s3://bucket/shards/ssv1 \
        --workers 8 --gpus [--optim.lr 0.02 --model.dropout 0.8 ...] [--resume CHECKPOINT] [--address auto]
    ray job submit --working-dir . -- python -m jobs.train --config jobs/configs/k400_r50_8f.yaml ...

Every field of TrainConfig is a dotted flag. ``--workers``/``--gpus``/``--resume``/``--name``/``--tracking-uri``
are shortcuts for ``--run.workers``, ``--run.use_gpu true``, ``--run.resume``, ``--run.name``,
``--tracking.uri``. The learning rate in a recipe is for ``optim.reference_batch`` samples per step and is
scaled linearly to ``loader.batch_size * workers``. Prints a progress line with ETAs every N steps and a
summary per epoch, then a summary: the best score, the last and best checkpoints, the registered model, the
MLflow run's page and the command that resumes the run (--json: the final metrics and the checkpoints'
locations as one JSON line). Exit status 2 for a bad configuration, 1 if training failed or if MLflow calls
could not be sent (they are kept in a journal beside the checkpoints; jobs/replay_tracking.py); on SIGTERM /
SIGINT, 143 / 130 after the line "train: stopped: ... resume with: <command>".
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

import ray.train

from jobs.cli import Job, JobFailed, Option, Shortcut, finish, run, tracking_uri_flag
from pipeline.errors import Stopped
from pipeline.summary import Item, Summary, pct
from tdn.tracking.journal import pending_operations
from tdn.tracking.links import find_train_run, model_link, run_link, ui_items
from tdn.training import metric_names as names
from tdn.training.config import TrainConfig
from tdn.training.failures import TrainingDiverged
from tdn.training.launcher import RunStopped, best_checkpoint, fit, tracking_journal

JOB = Job(
    "train",
    TrainConfig,
    __doc__,
    shortcuts=(
        Shortcut("--workers", "run.workers", help="number of DDP workers (= --run.workers)"),
        Shortcut("--gpus", "run.use_gpu", const="true", help="one GPU per worker (= --run.use_gpu true)"),
        Shortcut("--resume", "run.resume", help="checkpoint file/folder to continue from (= --run.resume)"),
        Shortcut("--name", "run.name", help="run name; the same name again resumes it (= --run.name)"),
        tracking_uri_flag("tracking.uri"),
        Shortcut(
            "--shards",
            "data.shards",
            help="the shard job's output folder (with --split), or a split folder itself (= --data.shards)",
        ),
        Shortcut(
            "--split", "data.train_split", help="the training split under --shards (= --data.train_split)"
        ),
    ),
    options=(Option("--address", "Ray cluster address (default: RAY_ADDRESS or local)"),),
    input_errors=(ValueError,),
    ray=True,
    summary=True,
)
# input_errors: fit() checks the data and the initial weights before starting workers (missing shards, a
# weights file that does not fit the model) and raises ValueError / FileNotFoundError for them.


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command = list(sys.argv[1:] if argv is None else argv)
    return run(JOB, argv, lambda cfg, args: train(cfg, args, command))


def train(cfg: TrainConfig, args: argparse.Namespace, command: list[str]) -> int:
    started = time.monotonic()
    try:
        result = fit(cfg, address=args.address)
    except ray.train.TrainingFailedError as exc:  # restarts (run.max_failures) used up
        raise JobFailed(str(exc)) from exc
    except TrainingDiverged as exc:  # a NaN/inf loss or gradient: nothing was registered, the run FAILED
        raise JobFailed(str(exc)) from exc
    except RunStopped as exc:  # SIGTERM / SIGINT: stopped at a step, checkpoint saved if time allowed
        raise Stopped(f"{exc}; resume with: {resume_command(command, exc.run_key)}", exc.exit_code) from exc
    if result.error is not None:
        raise JobFailed(str(result.error))
    finish(train_summary(cfg, result, command, time.monotonic() - started), args)
    journal = tracking_journal(cfg, result)
    pending = pending_operations(journal)
    if pending:  # the tracking server was down when training ended: nothing is lost, but it is not in MLflow
        raise JobFailed(
            f"{pending} MLflow call(s) (metrics, artifacts, model registration, run status) were not "
            f"sent; they are kept in {journal}: send them with python -m jobs.replay_tracking {journal}"
        )
    return 0


def train_summary(cfg: TrainConfig, result: Any, command: list[str], seconds: float) -> Summary:
    """What the run gave: its best score, checkpoints, registered model, MLflow page, how to resume it."""
    run_key = str(result.path).rstrip("/").rsplit("/", 1)[-1]
    last = result.checkpoint.path if result.checkpoint is not None else None  # the last: resume from it
    best = best_checkpoint(cfg, result)  # by checkpoint.monitor: the registered one
    metrics, monitor = result.metrics or {}, cfg.checkpoint.monitor
    score = metrics.get(names.best_key(monitor))
    best_text = (
        f"best {monitor} {score:.4g} ({os.path.basename(best.path)})" if score is not None else "no best"
    )
    val = f", val top-1 {pct(metrics[names.VAL_TOP1_PCT])}" if names.VAL_TOP1_PCT in metrics else ""
    last_epoch = f"train loss {metrics[names.EPOCH_LOSS]:.4f}{val}" if names.EPOCH_LOSS in metrics else ""
    items = [
        Item("last checkpoint", f"{last} (a restart resumes from it)" if last else ""),
        Item(
            "best checkpoint", f"{best.path} (registered)" if best is not None and best.path != last else ""
        ),
    ]
    if cfg.tracking.enabled:
        found = find_train_run(cfg.tracking.uri, cfg.tracking.experiment, run_key)
        if found is not None:
            for name, version in found.versions:
                link = model_link(cfg.tracking.uri, name, version)
                items.append(Item("model", f"models:/{name}/{version}  {link}"))
            items.append(Item("MLflow run", run_link(cfg.tracking.uri, found.run_id, found.experiment_id)))
            items += ui_items(cfg.tracking.uri)
    else:
        items.append(Item("MLflow run", "none (tracking off: --tracking-uri none / tracking.enabled=false)"))
    items.append(Item("resume", resume_command(command, run_key)))
    data = {
        "metrics": metrics,
        "checkpoint": last,
        "best_checkpoint": best.path if best is not None else None,
        "path": result.path,
    }
    epochs = int(metrics.get(names.EPOCH, 0))
    headline = f"{run_key}: {epochs} epoch(s) in {seconds:.0f} s, {best_text}" + (
        f"; last epoch: {last_epoch}" if last_epoch else ""
    )
    return Summary("train", headline, tuple(items), data)


def resume_command(argv: list[str], run_key: str) -> str:
    """This job's command line again, with the run's name (an unnamed run got one at launch)."""
    named = any(a in ("--name", "--run.name") or a.startswith(("--name=", "--run.name=")) for a in argv)
    return shlex.join(
        [os.path.basename(sys.executable), "-m", "jobs.train", *argv, *([] if named else ["--name", run_key])]
    )


if __name__ == "__main__":
    sys.exit(main())
