"""Rank 0's account of a training run: the console lines and the MLflow run.

RunLog.open(ctx, state)     rank 0: Tracker (queued MLflow calls) with params, tags, dataset inputs;
                            other ranks: None
.epoch_done(state, metrics, val, new_best)   epoch summary line + the epoch's metrics under their MLflow
                            names (loss/train, loss/val, top1_pct/val (with the val split), ...,
                            top1_pct/val_best) at step = the global step
.finish(state, per_class)   config.yaml, per_class_accuracy.csv, metrics.csv + curves.png, the best
                            checkpoint logged and registered; the run ends FINISHED (journal if unsent)
.fail()                     the run ends FAILED (an exception left the loop)
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass

import torch
import yaml

from pipeline import storage
from pipeline.config import config_to_dict, flatten
from pipeline.loading.shard_reading import read_index
from tdn.reporting.training_curves import write_training_history
from tdn.tracking.journal import JOURNAL_FOLDER
from tdn.tracking.lineage import DatasetRef, ShardDataset
from tdn.tracking.mlflow_store import (
    DESCRIPTION_TAG,
    KIND_TAG,
    KIND_TRAIN,
    RESUMED_FROM_TAG,
    STOP_REASON_TAG,
    TRAIN_INDEX_CHECKSUM_TAG,
    VAL_SAMPLES_TAG,
    WORLD_SIZE_TAG,
)
from tdn.tracking.tracker import Tracker
from tdn.training import metric_names as names
from tdn.training.checkpointing import RunState, best_checkpoint_file
from tdn.training.console import console
from tdn.training.description import train_description
from tdn.training.epoch import ProgressReporter
from tdn.training.preemption import StopRequest
from tdn.training.progress import ConsoleBar, EpochSummary, ProgressClock, epoch_line
from tdn.training.validation import input_example, write_per_class_csv
from tdn.training.worker import WorkerContext


def registered_score(state: RunState) -> dict[str, float]:
    """The registered checkpoint's numbers (its version's tags): those of the best epoch, else the last."""
    record = next((r for r in state.history if r.epoch == state.best.epoch), None)
    if record is None:
        last = state.last_metrics
        keys = {
            "val_top1_pct": names.VAL_TOP1_PCT,
            "val_top5_pct": names.VAL_TOP5_PCT,
            "train_loss": names.EPOCH_LOSS,
            "epoch": names.EPOCH,
        }
        return {short: last[key] for short, key in keys.items() if key in last}
    score = {
        "val_top1_pct": record.val_top1_pct,
        "val_top5_pct": record.val_top5_pct,
        "train_loss": record.train_loss,
        "epoch": float(record.epoch),
    }
    return {k: v for k, v in score.items() if v is not None}


@dataclass
class RunLog:
    """Rank 0's console lines and MLflow run (``tracker`` None: tracking off)."""

    ctx: WorkerContext
    tracker: Tracker | None
    val_dataset: DatasetRef | None  # the val split, which the val/* metrics carry
    reporter: ProgressReporter  # progress lines and step metrics during an epoch

    @classmethod
    def _make(cls, ctx: WorkerContext, tracker: Tracker | None, val_dataset: DatasetRef | None) -> RunLog:
        clock = ProgressClock(ctx.cfg.optim.epochs, ctx.steps_per_epoch)
        bar = ConsoleBar()
        reporter = ProgressReporter(ctx.cfg.run.log_every_steps, ctx.samples_per_step, clock, bar, tracker)
        return cls(ctx, tracker, val_dataset, reporter)

    @classmethod
    def open(cls, ctx: WorkerContext, state: RunState) -> RunLog | None:
        if ctx.rank != 0:
            return None
        cfg = ctx.cfg
        if not cfg.tracking.enabled:
            return cls._make(ctx, None, None)
        # calls still unsent when training ends go to a journal beside the checkpoints (replay_tracking.py)
        run_key = ctx.spec.run_key
        journal_dir = storage.join(cfg.run.storage_path, run_key, JOURNAL_FOLDER)
        tracker = Tracker(cfg.tracking, run_key, run_key, journal_dir, wal_folder(journal_dir, run_key))
        tracker.log_params(flatten(config_to_dict(cfg)))
        resumed = {RESUMED_FROM_TAG: state.resumed_from} if state.resumed_from else {}
        tracker.set_tags(
            {
                **ctx.spec.tags,
                KIND_TAG: KIND_TRAIN,
                TRAIN_INDEX_CHECKSUM_TAG: ctx.index.checksum,
                WORLD_SIZE_TAG: ctx.world,
                **resumed,
            }
        )
        val_index = read_index(ctx.val_dir) if ctx.val_dir else None
        about = train_description(cfg, ctx.index, val_index, ctx.world, ctx.samples_per_step)
        tracker.set_tags({DESCRIPTION_TAG: about})  # the run page's description
        inputs = [ShardDataset.from_index(ctx.index, ctx.train_dir, "training")]
        if val_index is not None:
            inputs.append(ShardDataset.from_index(val_index, ctx.val_dir, "validation"))
        tracker.log_inputs(inputs)  # the run's Datasets panel: source = split folder, digest = its checksum
        return cls._make(ctx, tracker, inputs[-1].ref() if ctx.val_dir else None)

    def epoch_done(self, state: RunState, new_best: bool, val_samples: int) -> None:
        """The summary line and the epoch's MLflow metrics at the global step: loss/train, top1_pct/train,
        train/epoch_time_s, loss/val, top1_pct/val, top5_pct/val (with the val split), <monitor>_best when this
        epoch is the new best (metric_names.mlflow_key; epoch and step are the x-axis)."""
        self.reporter.clock.end_epoch()
        metrics, best = state.last_metrics, state.best
        step = int(metrics[names.STEP])
        summary = EpochSummary(
            epoch=state.epochs_done,
            epochs=self.ctx.cfg.optim.epochs,
            train_loss=metrics[names.EPOCH_LOSS],
            train_top1_pct=metrics[names.EPOCH_TOP1_PCT],
            val_top1_pct=metrics.get(names.VAL_TOP1_PCT),
            val_top5_pct=metrics.get(names.VAL_TOP5_PCT),
            monitor=best.monitor,
            best=best.score,
            best_epoch=best.epoch,
            epoch_time_s=metrics[names.EPOCH_TIME_S],
        )
        self.reporter.bar.line(epoch_line(summary))
        if self.tracker is None:
            return
        if val_samples:
            self.tracker.set_tags({VAL_SAMPLES_TAG: val_samples})
        train_keys = (names.EPOCH_LOSS, names.EPOCH_TOP1_PCT, names.EPOCH_TIME_S)
        val_keys = (names.VAL_LOSS, names.VAL_TOP1_PCT, names.VAL_TOP5_PCT)
        groups = [  # under their MLflow names (metric_names.mlflow_key): train and val side by side
            ({names.mlflow_key(k): metrics[k] for k in train_keys}, None),
            ({names.mlflow_key(k): metrics[k] for k in val_keys if k in metrics}, self.val_dataset),
        ]
        if new_best and best.score is not None:
            on_val = best.monitor.startswith("val/")
            best_metric = {names.mlflow_best_key(best.monitor): best.score}
            groups.append((best_metric, self.val_dataset if on_val else None))
        # one call, on disk (write-ahead log) before the epoch's checkpoint is reported: a restart from that
        # checkpoint finds it there, one from the one before replays the epoch, whose metrics MLflow has
        # either all or none of (tdn/tracking/tracker.py)
        self.tracker.log_metric_groups(step, groups)

    def finish(self, state: RunState, per_class: torch.Tensor | None) -> None:
        """Config, per-class accuracy, metrics.csv + curves.png and the best checkpoint to MLflow; register
        the best (the last one when no epoch measured checkpoint.monitor); end the run."""
        tracker, cfg, workdir = self.tracker, self.ctx.cfg, self.ctx.workdir
        if tracker is None:
            return
        config_file = os.path.join(workdir, "config.yaml")
        with open(config_file, "w", encoding="utf-8") as f:
            yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
        tracker.log_artifact(config_file)
        if per_class is not None:
            csv_file = os.path.join(workdir, "per_class_accuracy.csv")
            write_per_class_csv(csv_file, self.ctx.classes, per_class)
            tracker.log_artifact(csv_file)
        if state.history:
            for path in write_training_history(state.history, os.path.join(workdir, "history")):
                tracker.log_artifact(path)
        if state.last_checkpoint is not None:
            run_key = self.ctx.spec.run_key
            best_file = best_checkpoint_file(cfg, run_key, state.best, workdir, state.last_checkpoint)
            tracker.log_artifact(best_file, "checkpoint")
            if cfg.tracking.registered_model:
                example = input_example(self.ctx, os.path.join(workdir, "input_example.npz"))
                name, alias = cfg.tracking.registered_model, cfg.tracking.registered_alias
                tracker.register_model(best_file, name, registered_score(state), alias, example)
        self.close("FINISHED")

    def stop(self, request: StopRequest, step: int, timeout_s: float) -> None:
        """A preempted run: the reason as a tag, the run ended KILLED within ``timeout_s``."""
        if self.tracker is not None:
            self.tracker.set_tags({STOP_REASON_TAG: f"{request.reason()}; stopped after step {step}"})
        self.close("KILLED", timeout_s)

    def close(self, status: str, timeout_s: float | None = None) -> None:
        """End the MLflow run; what could not be sent is named (journal) or counted (dropped)."""
        tracker = self.tracker
        if tracker is None:
            return
        self.tracker = None
        tracker.close(status, timeout_s)
        if tracker.pending:
            console(
                f"warning: {tracker.pending} MLflow call(s) could not be sent to {tracker.uri}; "
                f"kept in {tracker.journal}"
            )
        if tracker.dropped:
            console(f"warning: {tracker.dropped} MLflow call(s) could not be sent to {tracker.uri}")


def wal_folder(journal_dir: str, run_key: str) -> str:
    """Where the tracker's write-ahead log lives (tdn/tracking/wal.py): beside the run's checkpoints on a
    local or shared file system, else (S3) in this node's temporary folder."""
    if not storage.is_s3(journal_dir):
        return journal_dir
    digest = hashlib.sha1(run_key.encode("utf-8")).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"tdn-wal-{digest}")
