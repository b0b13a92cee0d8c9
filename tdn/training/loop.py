"""The loop each Ray Train worker runs: one TrainConfig (tdn/training/config.py) -> epochs of DDP training.

One epoch on one worker (DDP, one process per worker, gloo on CPU / NCCL on GPU)::

    seed(seed, epoch, rank) -> for each batch x (B, T, 5, 3, S, S), y (B,):
        loss = CE(model(x), y) [bf16 autocast on GPU] -> backward -> clip 20 -> SGD step -> lr for next iter
        (tdn/training/epoch.py; rank 0 prints progress lines with ETAs, tdn/training/progress.py)
    -> validation (1 centre clip per video, sharded over ranks, counts all-reduced: validation.py)
    -> is it the best so far by checkpoint.monitor? (tdn/training/selection.py)
    -> rank 0 writes checkpoint.pt + config.yaml -> ray.train.report(metrics, checkpoint) on every rank
       into <storage_path>/<run name>/epoch_NNNN/; Ray keeps the best ones and the last
After the last epoch rank 0 logs the config, per-class accuracy, metrics.csv + curves.png and the best
checkpoint, which it registers. Metric names: tdn/training/metric_names.py. Each node's local rank 0 samples
system metrics into the run (tdn/training/system_metrics.py).

Before the first epoch the model gets its starting weights (``init``: ImageNet or a fine-tuning checkpoint).
Resuming: a restarted worker group continues from ``ray.train.get_checkpoint()`` (automatic after a failure),
else from ``run.resume``; an epoch's randomness depends only on (seed, epoch, rank), so an epoch replayed from
the same checkpoint gives the same weights (tdn/training/checkpointing.py, rng.py). Run it with
``tdn.training.launcher.fit`` or ``python jobs/train.py``.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from typing import Any

import torch
import yaml
from torch import nn

from pipeline import storage
from pipeline.config import ConfigError, config_from_dict, config_to_dict, flatten
from pipeline.loading.device_batch import make_decoder
from pipeline.loading.planning import train_steps_per_epoch
from pipeline.loading.prefetch import DevicePrefetcher
from pipeline.loading.shard_reading import read_index
from pipeline.loading.train_loader import train_loader
from tdn.model.networks import build_model_from_config
from tdn.reporting.training_curves import EpochRecord, write_training_history
from tdn.tracking.journal import JOURNAL_FOLDER
from tdn.tracking.lineage import DatasetRef, ShardDataset
from tdn.tracking.mlflow_store import (
    KIND_TAG,
    KIND_TRAIN,
    RESUMED_FROM_TAG,
    TRAIN_INDEX_CHECKSUM_TAG,
    VAL_SAMPLES_TAG,
    WORLD_SIZE_TAG,
)
from tdn.tracking.tracker import Tracker
from tdn.training import metric_names as names
from tdn.training.checkpointing import (
    best_checkpoint_file,
    fresh_workdir,
    init_weights,
    report_checkpoint,
    resume_from,
)
from tdn.training.config import TrainConfig
from tdn.training.console import console
from tdn.training.epoch import train_epoch
from tdn.training.optim import build_optimizer
from tdn.training.progress import (
    ConsoleBar,
    EpochSummary,
    ProgressClock,
    epoch_line,
    print_model_summary,
    resume_line,
)
from tdn.training.rng import seed_everything, seed_model_init
from tdn.training.selection import BestCheckpoint
from tdn.training.system_metrics import NodeSystemMetrics, start_node_sampler
from tdn.training.validation import validate, write_per_class_csv


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point. ``config``: {"train": config_to_dict(TrainConfig), "run_key", "tags"}."""
    import ray.train
    import ray.train.torch

    cfg = config_from_dict(TrainConfig, config["train"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    cuda = device.type == "cuda"
    train_dir = storage.join(cfg.data.shards, cfg.data.train_split)
    val_dir = storage.join(cfg.data.shards, cfg.data.val_split) if cfg.data.val_split else ""
    index = read_index(train_dir)
    classes = list(index.classes)
    if len(classes) != cfg.model.num_classes:
        raise ConfigError(
            f"{train_dir} has {len(classes)} classes, model.num_classes={cfg.model.num_classes}"
        )
    steps_per_epoch = train_steps_per_epoch(index, cfg.loader, world)

    seed_model_init(cfg.run.seed)  # before the model is built: its initial weights come from run.seed alone
    model = build_model_from_config(cfg.model)
    init_weights(model, cfg.init)
    model.to(device)
    if cuda and cfg.run.channels_last:
        # Module.to(memory_format=...) exists at runtime (torch docs) but torch's overloads leave it out
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    global_batch = cfg.loader.batch_size * world
    optimizer, schedule = build_optimizer(model, cfg.optim, global_batch, steps_per_epoch)

    start_epoch, step, last_metrics, ckpt_path = 0, 0, {}, None
    best = BestCheckpoint(cfg.checkpoint.monitor, cfg.checkpoint.mode)
    history: list[EpochRecord] = []  # per epoch done: metrics.csv and curves.png at the end
    ray_ckpt = ray.train.get_checkpoint()
    resumed_from = ""
    workdir = fresh_workdir(config["run_key"], rank)  # emptied: what a killed attempt left goes here
    # Ray's checkpoint: restarted after a failure, or the same run name launched again
    source = (
        ray_ckpt.to_directory(os.path.join(workdir, "resumed")) if ray_ckpt is not None else cfg.run.resume
    )
    if source:
        resumed = resume_from(source, model, optimizer, schedule, cfg.checkpoint.monitor, cfg.checkpoint.mode)
        start_epoch, step, last_metrics = resumed.epoch, resumed.step, resumed.metrics
        ckpt_path, best, history = resumed.path, resumed.best, resumed.history
        # where it came from (Ray's checkpoint folder, or run.resume), not the worker's scratch copy
        resumed_from = ray_ckpt.path if ray_ckpt is not None else resumed.path
        if rank == 0:
            console(resume_line(resumed_from, start_epoch, step, best.monitor, best.score, best.epoch))
    if rank == 0:
        params = sum(p.numel() for p in model.parameters())
        print_model_summary(cfg.model, params, cfg.loader.input_size)

    ddp: nn.Module = model
    if world > 1:
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    if cfg.run.compile:
        ddp = torch.compile(ddp)  # type: ignore[assignment]  # forward and backward; checkpoints save `model`
    # One loader for the whole run (its workers persist across epochs); batch k+1 is copied, or decoded
    # (loader.decode: device), on the device while step k runs.
    loader = train_loader(
        train_dir, cfg.loader, rank=rank, world_size=world, epoch=start_epoch, seed=cfg.run.seed
    )
    decoder = make_decoder(device) if cfg.loader.decode == "device" else None
    batches = DevicePrefetcher(loader, device, decoder)

    tracker = None
    val_dataset: DatasetRef | None = None  # the val split, which the val/* metrics carry
    if rank == 0 and cfg.tracking.enabled:
        # calls still unsent when training ends go to a journal beside the checkpoints (replay_tracking.py)
        journal_dir = storage.join(cfg.run.storage_path, config["run_key"], JOURNAL_FOLDER)
        tracker = Tracker(
            cfg.tracking, run_key=config["run_key"], run_name=config["run_key"], journal_dir=journal_dir
        )
        tracker.log_params(flatten(config_to_dict(cfg)))
        tracker.set_tags(
            {
                **config.get("tags", {}),
                KIND_TAG: KIND_TRAIN,
                TRAIN_INDEX_CHECKSUM_TAG: index.checksum,
                WORLD_SIZE_TAG: world,
                **({RESUMED_FROM_TAG: resumed_from} if resumed_from else {}),
            }
        )
        inputs = [ShardDataset.from_index(index, train_dir, "training")]
        if val_dir:
            inputs.append(ShardDataset.from_index(read_index(val_dir), val_dir, "validation"))
            val_dataset = inputs[-1].ref()
        tracker.log_inputs(inputs)  # the run's Datasets panel: source = split folder, digest = its checksum
    sampler = start_node_sampler(cfg.tracking, config["run_key"], ctx.get_local_rank(), tracker, node_name())
    try:
        per_class = None
        clock, bar = ProgressClock(cfg.optim.epochs, steps_per_epoch), ConsoleBar()
        for epoch in range(start_epoch, cfg.optim.epochs):
            seed_everything(cfg.run.seed, epoch, rank)
            loader.set_epoch(epoch)
            clock.start_epoch(epoch)
            t0 = time.perf_counter()
            stats, step = train_epoch(ddp, batches, optimizer, schedule, cfg, epoch, step, steps_per_epoch,
                                      device, rank, world, tracker, clock, bar)  # fmt: skip
            metrics: dict[str, float] = {names.EPOCH: epoch + 1, names.STEP: step, **stats,
                                         names.EPOCH_TIME_S: time.perf_counter() - t0}  # fmt: skip
            val: dict[str, float] = {}
            if val_dir and ((epoch + 1) % cfg.run.val_every_epochs == 0 or epoch + 1 == cfg.optim.epochs):
                val, per_class = validate(model, val_dir, cfg, device, rank, world)
                metrics.update(val)
                if tracker and not history_validated(history):
                    tracker.set_tags({VAL_SAMPLES_TAG: int(per_class[:, 0].sum())})
            new_best = best.update(metrics, epoch + 1)
            if best.score is not None:
                metrics[names.best_key(best.monitor)] = best.score
            history.append(epoch_record(metrics))
            if rank == 0:
                bar.line(epoch_line(EpochSummary(
                    epoch + 1, cfg.optim.epochs, metrics[names.EPOCH_LOSS], metrics[names.EPOCH_TOP1_PCT],
                    val.get(names.VAL_TOP1_PCT), val.get(names.VAL_TOP5_PCT), best.monitor, best.score,
                    best.epoch, metrics[names.EPOCH_TIME_S],
                )))  # fmt: skip
            if tracker:
                log_epoch(tracker, metrics, val, step, val_dataset, best if new_best else None)
            last_metrics = metrics
            ckpt_path = report_checkpoint(model, optimizer, schedule, cfg, classes, epoch + 1, step, metrics,
                                          rank, workdir, best, history)  # fmt: skip
            clock.end_epoch()
        if rank == 0:
            finish(tracker, cfg, classes, per_class, last_metrics, ckpt_path, workdir,
                   FinalState(config["run_key"], best, history, sampler))  # fmt: skip
            tracker = None
    finally:
        if sampler is not None:
            sampler.stop()
        if tracker is not None:
            tracker.close(status="FAILED")
        shutil.rmtree(workdir, ignore_errors=True)


def node_name() -> str:
    """This node's name in the system metrics' keys (system/<node>/...): its IP address."""
    import ray.util

    return str(ray.util.get_node_ip_address())


def history_validated(history: list[EpochRecord]) -> bool:
    return any(r.val_top1_pct is not None for r in history)


def epoch_record(metrics: dict[str, float]) -> EpochRecord:
    """The epoch's row of metrics.csv (tdn/reporting/training_curves.py)."""
    return EpochRecord(
        epoch=int(metrics[names.EPOCH]),
        step=int(metrics[names.STEP]),
        train_loss=metrics[names.EPOCH_LOSS],
        train_top1_pct=metrics[names.EPOCH_TOP1_PCT],
        lr=metrics[names.LR],
        epoch_time_s=metrics[names.EPOCH_TIME_S],
        samples_per_s=metrics[names.EPOCH_SAMPLES_PER_S],
        val_loss=metrics.get(names.VAL_LOSS),
        val_top1_pct=metrics.get(names.VAL_TOP1_PCT),
        val_top5_pct=metrics.get(names.VAL_TOP5_PCT),
    )


def log_epoch(tracker: Tracker, metrics: dict[str, float], val: dict[str, float], step: int,
              val_dataset: DatasetRef | None, new_best: BestCheckpoint | None) -> None:  # fmt: skip
    """The epoch's MLflow metrics at the global step: train/epoch_*, val/* (with the val split), and
    best/<monitor> when this epoch is the new best (no counters: epoch and step are the x-axis)."""
    train_keys = (names.EPOCH_LOSS, names.EPOCH_TOP1_PCT, names.EPOCH_TIME_S)
    tracker.log_metrics({k: metrics[k] for k in train_keys}, step=step)
    if val:
        tracker.log_metrics(val, step=step, dataset=val_dataset)
    if new_best is not None and new_best.score is not None:
        on_val = new_best.monitor.startswith("val/")
        tracker.log_metrics({names.best_key(new_best.monitor): new_best.score}, step=step,
                            dataset=val_dataset if on_val else None)  # fmt: skip


@dataclass
class FinalState:
    """What finish() needs besides the last epoch: the run, its best checkpoint, history, system sampler."""

    run_key: str  # the Ray run name (the MLflow run's tdn.train_run tag)
    best: BestCheckpoint
    history: list[EpochRecord]
    sampler: NodeSystemMetrics | None  # this node's system-metrics sampler; stopped before the run ends


def finish(
    tracker: Tracker | None,
    cfg: TrainConfig,
    classes: list[str],
    per_class: torch.Tensor | None,
    metrics: dict[str, float],
    ckpt_path: str | None,
    workdir: str,
    final: FinalState,
) -> None:
    """Rank 0 after the last epoch: config, per-class accuracy, metrics.csv + curves.png and the best
    checkpoint to MLflow; register the best (the last one when no epoch measured checkpoint.monitor)."""
    if tracker is None:
        return
    config_file = os.path.join(workdir, "config.yaml")
    with open(config_file, "w", encoding="utf-8") as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
    tracker.log_artifact(config_file)
    if per_class is not None:
        csv_file = os.path.join(workdir, "per_class_accuracy.csv")
        write_per_class_csv(csv_file, classes, per_class)
        tracker.log_artifact(csv_file)
    if final.history:
        for path in write_training_history(final.history, os.path.join(workdir, "history")):
            tracker.log_artifact(path)
    if ckpt_path is not None:
        best_file = best_checkpoint_file(cfg, final.run_key, final.best, workdir, ckpt_path)
        tracker.log_artifact(best_file, "checkpoint")
        if cfg.tracking.registered_model:
            tracker.register_model(
                best_file, cfg.tracking.registered_model, registered_score(final, metrics),
                cfg.tracking.registered_alias,
            )  # fmt: skip
    if final.sampler is not None:
        final.sampler.stop()  # its last values reach the run before it ends
    tracker.close()
    if tracker.pending:
        console(
            f"warning: {tracker.pending} MLflow call(s) could not be sent to {tracker.uri}; "
            f"kept in {tracker.journal}"
        )
    if tracker.dropped:
        console(f"warning: {tracker.dropped} MLflow call(s) could not be sent to {tracker.uri}")


def registered_score(final: FinalState, last: dict[str, float]) -> dict[str, float]:
    """The registered checkpoint's numbers (its version's tags): those of the best epoch, else the last."""
    record = next((r for r in final.history if r.epoch == final.best.epoch), None)
    if record is None:
        keys = {"val_top1_pct": names.VAL_TOP1_PCT, "val_top5_pct": names.VAL_TOP5_PCT,
                "train_loss": names.EPOCH_LOSS, "epoch": names.EPOCH}  # fmt: skip
        return {short: last[key] for short, key in keys.items() if key in last}
    score = {"val_top1_pct": record.val_top1_pct, "val_top5_pct": record.val_top5_pct,
             "train_loss": record.train_loss, "epoch": float(record.epoch)}  # fmt: skip
    return {k: v for k, v in score.items() if v is not None}
