"""The loop each Ray Train worker runs: one TrainConfig (tdn/training/config.py) -> epochs of DDP training.

One epoch on one worker (DDP, one process per worker, gloo on CPU / NCCL on GPU)::

    seed(seed, epoch, rank) -> for each batch x (B, T, 5, 3, S, S), y (B,):
        loss = CE(model(x), y) [bf16 autocast on GPU] -> backward -> clip 20 -> SGD step -> lr for next iter
    -> validation (1 centre clip per video, sharded over ranks, counts all-reduced)
    -> rank 0 writes checkpoint.pt + config.yaml -> ray.train.report(metrics, checkpoint) on every rank

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
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn

from pipeline import storage
from pipeline.config import ConfigError, config_from_dict, config_to_dict, flatten
from pipeline.loading.device_batch import make_decoder
from pipeline.loading.eval_loader import eval_batches
from pipeline.loading.planning import train_steps_per_epoch
from pipeline.loading.prefetch import DevicePrefetcher, batch_on_device
from pipeline.loading.shard_reading import indexed_shards, read_index
from pipeline.loading.train_loader import train_loader
from tdn.model.networks import build_model_from_config
from tdn.tracking.journal import JOURNAL_FOLDER
from tdn.tracking.mlflow_store import (
    KIND_TAG,
    KIND_TRAIN,
    RESUMED_FROM_TAG,
    TRAIN_INDEX_CHECKSUM_TAG,
    WORLD_SIZE_TAG,
)
from tdn.tracking.tracker import Tracker
from tdn.training.checkpointing import fresh_workdir, init_weights, report_checkpoint, resume_from
from tdn.training.config import TrainConfig
from tdn.training.console import console, format_metrics
from tdn.training.optim import IterationSchedule, build_optimizer, clip_gradients
from tdn.training.rng import seed_everything, seed_model_init

# ---------------------------------------------------------------------------------------------- the loop


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
    ray_ckpt = ray.train.get_checkpoint()
    workdir = fresh_workdir(config["run_key"], rank)  # emptied: what a killed attempt left goes here
    # Ray's checkpoint: restarted after a failure, or the same run name launched again
    source = (
        ray_ckpt.to_directory(os.path.join(workdir, "resumed")) if ray_ckpt is not None else cfg.run.resume
    )
    if source:
        resumed = resume_from(source, model, optimizer, schedule)
        start_epoch, step, last_metrics = resumed.epoch, resumed.step, resumed.metrics
        ckpt_path = resumed.path
        console(f"[rank {rank}] resumed from {ckpt_path}: epoch {start_epoch}, step {step}")

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
                **({RESUMED_FROM_TAG: ckpt_path} if ckpt_path else {}),
            }
        )
    try:
        per_class = None
        for epoch in range(start_epoch, cfg.optim.epochs):
            seed_everything(cfg.run.seed, epoch, rank)
            loader.set_epoch(epoch)
            t0 = time.perf_counter()
            stats, step = train_epoch(
                ddp,
                batches,
                optimizer,
                schedule,
                cfg,
                epoch,
                step,
                steps_per_epoch,
                device,
                rank,
                world,
                tracker,
            )
            metrics: dict[str, float] = {
                "epoch": epoch + 1,
                "step": step,
                **stats,
                "epoch_time_s": time.perf_counter() - t0,
            }
            if val_dir and ((epoch + 1) % cfg.run.val_every_epochs == 0 or epoch + 1 == cfg.optim.epochs):
                val, per_class = validate(model, val_dir, cfg, device, rank, world)
                metrics.update(val)
            if rank == 0:
                console(format_metrics(f"epoch {epoch + 1}/{cfg.optim.epochs}", metrics))
            if tracker:
                tracker.log_metrics({f"epoch/{k}": v for k, v in metrics.items()}, step=step)
            last_metrics = metrics
            ckpt_path = report_checkpoint(
                model, optimizer, schedule, cfg, classes, epoch + 1, step, metrics, rank, workdir
            )
        if rank == 0:
            finish(tracker, cfg, classes, per_class, last_metrics, ckpt_path, workdir)
            tracker = None
    finally:
        if tracker is not None:
            tracker.close(status="FAILED")
        shutil.rmtree(workdir, ignore_errors=True)


def train_epoch(
    ddp: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    schedule: IterationSchedule,
    cfg: TrainConfig,
    epoch: int,
    step: int,
    steps_per_epoch: int,
    device: torch.device,
    rank: int,
    world: int,
    tracker: Tracker | None,
) -> tuple[dict[str, float], int]:
    """One pass over this rank's share of the shards. Returns (epoch stats averaged over ranks, global step)."""
    ddp.train()
    criterion = nn.CrossEntropyLoss()
    cuda = device.type == "cuda"
    sums = torch.zeros(4, dtype=torch.float64)  # loss*n, correct, n, data wait seconds
    window = {"loss": 0.0, "n": 0, "wait": 0.0, "t0": time.perf_counter()}
    waits: list[float] = []  # time to the next batch, per step
    epoch_t0 = time.perf_counter()
    it = iter(loader)
    for i in range(steps_per_epoch):
        t_wait = time.perf_counter()
        x, y = next(it)
        # Batches from a DevicePrefetcher are already there; uint8 ones (loader.output_dtype) are normalised
        # on the device (4x fewer bytes to copy), encoded ones (loader.decode: device) decoded there.
        x, y = batch_on_device(x, device), y.to(device, non_blocking=True)
        wait = time.perf_counter() - t_wait
        waits.append(wait)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and cfg.run.amp):
            logits = ddp(x)
            loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(ddp, cfg.optim)
        optimizer.step()
        schedule.step()
        step += 1
        maybe_crash(cfg, step, rank, world)
        n = y.shape[0]
        loss_value = float(loss.detach())
        sums += torch.tensor(
            [loss_value * n, float((logits.argmax(1) == y).sum()), n, wait], dtype=torch.float64
        )
        window["loss"] += loss_value
        window["n"] += 1
        window["wait"] += wait
        if rank == 0 and (window["n"] >= cfg.run.log_every_steps or i + 1 == steps_per_epoch):
            elapsed = time.perf_counter() - window["t0"]
            recent = waits[-int(window["n"]) :]
            logged = {
                "loss": window["loss"] / window["n"],
                "lr": schedule.lr_at(step - 1),
                "samples_per_s": window["n"] * cfg.loader.batch_size * world / elapsed,
                "data_wait_frac": window["wait"] / elapsed,
                "next_batch_p50_s": float(np.percentile(recent, 50)),
                "next_batch_p95_s": float(np.percentile(recent, 95)),
            }
            console(format_metrics(f"epoch {epoch + 1} step {i + 1}/{steps_per_epoch} ({step})", logged))
            if tracker:
                tracker.log_metrics({f"train/{k}": v for k, v in logged.items()}, step=step)
            window = {"loss": 0.0, "n": 0, "wait": 0.0, "t0": time.perf_counter()}
    elapsed = time.perf_counter() - epoch_t0
    wait_total = float(sums[3])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    return {
        "train_loss": float(sums[0]) / max(float(sums[2]), 1.0),  # float64 either way: same numbers
        "train_top1": float(sums[1]) / max(float(sums[2]), 1.0),
        "samples_per_s": float(sums[2]) / elapsed,
        "data_wait_frac": wait_total / elapsed,
        "next_batch_p50_s": float(np.percentile(waits, 50)) if waits else 0.0,
        "next_batch_p95_s": float(np.percentile(waits, 95)) if waits else 0.0,
        "lr": schedule.lr,
    }, step


def maybe_crash(cfg: TrainConfig, step: int, rank: int, world: int) -> None:
    """Test hook: the last rank dies once (os._exit, like a lost process) when reaching the configured step."""
    if cfg.run.crash_once_at_step != step or rank != world - 1 or not cfg.run.crash_marker:
        return
    if os.path.exists(cfg.run.crash_marker):
        return
    with open(cfg.run.crash_marker, "w") as f:
        f.write(f"rank {rank} exited at step {step}\n")
    console(f"[rank {rank}] fault injection: exiting at step {step}")
    os._exit(1)


@torch.no_grad()
def validate(
    model: nn.Module, val_dir: str, cfg: TrainConfig, device: torch.device, rank: int, world: int
) -> tuple[dict[str, float], torch.Tensor]:
    """Top-1/top-5 and loss over the val split's samples (each a centre clip), shards split over ranks,
    counts all-reduced. (Per sample: a split with several views per video counts each view; tdn/evaluation/batch_inference.py
    does the per-video aggregation.)

    Returns (metrics, per-class counts (num_classes, 3): samples, top-1 hits, top-5 hits).
    """
    model.eval()
    cuda = device.type == "cuda"
    k = min(5, cfg.model.num_classes)
    counts = torch.zeros(cfg.model.num_classes, 3, dtype=torch.float64)
    loss_sum = torch.zeros(1, dtype=torch.float64)
    shards = indexed_shards(val_dir)[rank::world]  # whole shards per rank; uneven shares are fine
    decoder = make_decoder(device) if cfg.loader.decode == "device" else None
    for batch in eval_batches(shards, cfg.loader, cfg.loader.batch_size) if shards else []:
        x, y = batch_on_device(batch.x, device, decoder), batch.labels.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and cfg.run.amp):
            logits = model(x).float()
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        topk = logits.topk(k, dim=1).indices
        hit1 = (topk[:, 0] == y).double().cpu()
        hit5 = (topk == y[:, None]).any(dim=1).double().cpu()
        yc = y.cpu()
        counts.index_add_(0, yc, torch.stack([torch.ones_like(hit1), hit1, hit5], dim=1))
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(counts)
        dist.all_reduce(loss_sum)
    n = float(counts[:, 0].sum())
    if n == 0:
        raise ValueError(f"{val_dir}: no validation samples were read")
    metrics = {
        "val_top1": float(counts[:, 1].sum()) / n,
        "val_top5": float(counts[:, 2].sum()) / n,
        "val_loss": float(loss_sum) / n,
        "val_samples": n,
    }
    return metrics, counts


def finish(
    tracker: Tracker | None,
    cfg: TrainConfig,
    classes: list[str],
    per_class: torch.Tensor | None,
    metrics: dict[str, float],
    ckpt_path: str | None,
    workdir: str,
) -> None:
    """Rank 0 after the last epoch: config, per-class accuracy and final checkpoint to MLflow; register it."""
    if tracker is None:
        return
    config_file = os.path.join(workdir, "config.yaml")
    with open(config_file, "w", encoding="utf-8") as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
    tracker.log_artifact(config_file)
    if per_class is not None:
        csv_file = os.path.join(workdir, "per_class_accuracy.csv")
        with open(csv_file, "w", encoding="utf-8") as f:
            f.write("class_index,class_name,samples,top1,top5\n")
            for i, name in enumerate(classes):
                n = float(per_class[i, 0])
                top1 = float(per_class[i, 1]) / n if n else float("nan")
                top5 = float(per_class[i, 2]) / n if n else float("nan")
                f.write(f'{i},"{name.replace(chr(34), chr(34) * 2)}",{int(n)},{top1:.6f},{top5:.6f}\n')
        tracker.log_artifact(csv_file)
    if ckpt_path is not None:
        tracker.log_artifact(ckpt_path, "checkpoint")
        if cfg.tracking.registered_model:
            score_keys = ("val_top1", "val_top5", "train_loss")
            score: dict[str, float] = {k: metrics[k] for k in score_keys if k in metrics}
            tracker.register_model(
                ckpt_path, cfg.tracking.registered_model, score, cfg.tracking.registered_alias
            )
    tracker.close()
    if tracker.pending:
        console(
            f"warning: {tracker.pending} MLflow call(s) could not be sent to {tracker.uri}; "
            f"kept in {tracker.journal}"
        )
    if tracker.dropped:
        console(f"warning: {tracker.dropped} MLflow call(s) could not be sent to {tracker.uri}")
