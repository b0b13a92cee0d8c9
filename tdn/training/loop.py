"""Training of TDN on WebDataset shards: the config of a training job and the loop each Ray Train worker runs.

    TrainConfig = model (tdn.ModelConfig) + data (where the shards are) + loader (pipeline.loading.loader.LoaderConfig)
                  + optim (tdn.training.optim.OptimConfig) + run (workers, storage, seed, resume) + tracking (MLflow)

One epoch on one worker (DDP, one process per worker, gloo on CPU / NCCL on GPU)::

    seed(seed, epoch, rank) -> for each batch x (B, T, 5, 3, S, S), y (B,):
        loss = CE(model(x), y) [bf16 autocast on GPU] -> backward -> clip 20 -> SGD step -> lr for next iter
    -> validation (1 centre clip per video, sharded over ranks, counts all-reduced)
    -> rank 0 writes checkpoint.pt + config.yaml -> ray.train.report(metrics, checkpoint) on every rank

Resuming: a restarted worker group continues from ``ray.train.get_checkpoint()`` (automatic after a failure),
else from ``run.resume``; an epoch's randomness depends only on (seed, epoch, rank), so an epoch replayed from
the same checkpoint gives the same weights. Run it with ``tdn.training.launcher.fit`` or ``python -m jobs.train``.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn

from pipeline import storage
from pipeline.config import config_from_dict, config_to_dict, flatten
from pipeline.loading.loader import (
    LoaderConfig,
    eval_batches,
    read_index,
    resolve_shards,
    train_loader,
    train_steps_per_epoch,
)
from pipeline.loading.transforms import normalise_on_device
from tdn.checkpoints.project import load_checkpoint, save_checkpoint, strict_load
from tdn.model.networks import ModelConfig, build_model_from_config
from tdn.tracking.registry import load_registered_model, register_checkpoint
from tdn.tracking.tracker import Tracker, TrackingConfig
from tdn.training.optim import IterationSchedule, OptimConfig, build_optimizer, clip_gradients

__all__ = ["DataConfig", "RunConfig", "TrainConfig", "load_registered_model", "train_loop_per_worker"]

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class DataConfig:
    shards: str = ""  # folder or s3:// prefix holding <train_split>/ and <val_split>/ (shard_job output)
    train_split: str = "train"
    val_split: str = "val"  # empty = no validation


@dataclass
class RunConfig:
    """How the job runs (not what it learns). ``name`` empty = a fresh unique name per launch."""

    name: str = ""
    storage_path: str = "./ray_results"  # local (shared between nodes) or s3://bucket/prefix
    workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    max_failures: int = 3
    keep_checkpoints: int = 2
    seed: int = 0
    log_every_steps: int = 20
    val_every_epochs: int = 1
    resume: str = ""  # project checkpoint (file, or folder holding checkpoint.pt) to continue training from
    init_from: str = ""  # project checkpoint whose weights start a fine-tuning (classifier kept if it fits)
    amp: bool = True  # bf16 autocast on GPU (ignored on CPU)
    channels_last: bool = True  # on GPU
    # Fault injection for tests: the last rank exits once at this global step (marker file records it).
    crash_once_at_step: int = -1
    crash_marker: str = ""


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        if self.run.workers < 1:
            raise ValueError(f"run.workers must be >= 1, got {self.run.workers}")


# ---------------------------------------------------------------------------------------------- randomness


def seed_everything(seed: int, epoch: int, rank: int) -> None:
    """Seed python, numpy and torch from (seed, epoch, rank): a replayed epoch draws the same numbers."""
    s = int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def rng_state() -> dict[str, Any]:
    """RNG states as tensors/lists/ints only, so the checkpoint loads with weights_only=True."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_version, "internal": list(py_internal), "gauss_next": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------- checkpoints


def resolve_checkpoint(uri: str) -> str:
    """A checkpoint file, or a folder (Ray checkpoint) holding ``checkpoint.pt``."""
    if storage.is_file(uri):
        return uri
    inner = storage.join(uri, CHECKPOINT_FILE)
    if storage.is_file(inner):
        return inner
    raise FileNotFoundError(f"{uri}: no checkpoint file there (expected a file or a folder with {CHECKPOINT_FILE})")


def init_weights_from(model: nn.Module, uri: str) -> None:
    """Fine-tuning start: every weight from a project checkpoint; the classifier too if its shape fits."""
    state = dict(load_checkpoint(resolve_checkpoint(uri))["model"])
    own = model.state_dict()
    for key in ("fc.weight", "fc.bias"):
        if key in state and state[key].shape != own[key].shape:
            state[key] = own[key]  # new head: different classes
            console(f"init_from {uri}: {key} {tuple(own[key].shape)} freshly initialised (classes differ)")
    strict_load(model, state, uri)


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
    classes = list(index["classes"])
    if len(classes) != cfg.model.num_classes:
        raise ValueError(f"{train_dir} has {len(classes)} classes, model.num_classes={cfg.model.num_classes}")
    steps_per_epoch = train_steps_per_epoch(index, cfg.loader, world)

    model = build_model_from_config(cfg.model)
    if cfg.run.init_from:
        init_weights_from(model, cfg.run.init_from)
    model.to(device)
    if cuda and cfg.run.channels_last:
        model.to(memory_format=torch.channels_last)
    global_batch = cfg.loader.batch_size * world
    optimizer, schedule = build_optimizer(model, cfg.optim, global_batch, steps_per_epoch)

    start_epoch, step, last_metrics, ckpt_path = 0, 0, {}, None
    ray_ckpt = ray.train.get_checkpoint()
    source = None
    if ray_ckpt is not None:
        source = ray_ckpt.to_directory()  # automatic: restarted after a failure, or same run name again
    elif cfg.run.resume:
        source = cfg.run.resume
    if source is not None:
        ckpt_path = resolve_checkpoint(source)
        ckpt = load_checkpoint(ckpt_path)
        strict_load(model, ckpt["model"], ckpt_path)
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["scheduler"])
        start_epoch, step, last_metrics = int(ckpt["epoch"]), int(ckpt["step"]), dict(ckpt.get("metrics", {}))
        if "rng" in ckpt:
            set_rng_state(ckpt["rng"])
        console(f"[rank {rank}] resumed from {ckpt_path}: epoch {start_epoch}, step {step}")

    ddp: nn.Module = model
    if world > 1:
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)

    tracker = None
    if rank == 0 and cfg.tracking.enabled:
        tracker = Tracker(cfg.tracking, run_key=config["run_key"], run_name=config["run_key"])
        tracker.log_params(flatten(config_to_dict(cfg)))
        tracker.set_tags({**config.get("tags", {}), "tdn.kind": "train",
                          "tdn.train_index_checksum": index.get("checksum", ""), "tdn.world_size": world,
                          **({"tdn.resumed_from": ckpt_path} if ckpt_path else {})})
    workdir = tempfile.mkdtemp(prefix="tdn-train-")
    try:
        per_class = None
        for epoch in range(start_epoch, cfg.optim.epochs):
            seed_everything(cfg.run.seed, epoch, rank)
            loader = train_loader(train_dir, cfg.loader, rank=rank, world_size=world, epoch=epoch,
                                  seed=cfg.run.seed)
            t0 = time.perf_counter()
            stats, step = train_epoch(ddp, loader, optimizer, schedule, cfg, epoch, step, steps_per_epoch,
                                      device, rank, world, tracker)
            metrics: dict[str, float] = {"epoch": epoch + 1, "step": step, **stats,
                                         "epoch_time_s": time.perf_counter() - t0}
            if val_dir and ((epoch + 1) % cfg.run.val_every_epochs == 0 or epoch + 1 == cfg.optim.epochs):
                val, per_class = validate(model, val_dir, cfg, device, rank, world)
                metrics.update(val)
            if rank == 0:
                console(format_metrics(f"epoch {epoch + 1}/{cfg.optim.epochs}", metrics))
            if tracker:
                tracker.log_metrics({f"epoch/{k}": v for k, v in metrics.items()}, step=step)
            last_metrics = metrics
            ckpt_path = report_checkpoint(model, optimizer, schedule, cfg, classes, epoch + 1, step, metrics,
                                          rank, workdir)
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
    epoch_t0 = time.perf_counter()
    it = iter(loader)
    for i in range(steps_per_epoch):
        t_wait = time.perf_counter()
        x, y = next(it)
        # uint8 batches (loader.output_dtype) are normalised on the device: 4x fewer bytes to copy
        x, y = normalise_on_device(x, device), y.to(device, non_blocking=True)
        wait = time.perf_counter() - t_wait
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
        sums += torch.tensor([loss_value * n, float((logits.argmax(1) == y).sum()), n, wait], dtype=torch.float64)
        window["loss"] += loss_value
        window["n"] += 1
        window["wait"] += wait
        if rank == 0 and (window["n"] >= cfg.run.log_every_steps or i + 1 == steps_per_epoch):
            elapsed = time.perf_counter() - window["t0"]
            logged = {"loss": window["loss"] / window["n"], "lr": schedule.lr_at(step - 1),
                      "samples_per_s": window["n"] * cfg.loader.batch_size * world / elapsed,
                      "data_wait_frac": window["wait"] / elapsed}
            console(format_metrics(f"epoch {epoch + 1} step {i + 1}/{steps_per_epoch} ({step})", logged))
            if tracker:
                tracker.log_metrics({f"train/{k}": v for k, v in logged.items()}, step=step)
            window = {"loss": 0.0, "n": 0, "wait": 0.0, "t0": time.perf_counter()}
    elapsed = time.perf_counter() - epoch_t0
    wait_total = float(sums[3])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    return {
        "train_loss": float(sums[0] / max(sums[2], 1)),
        "train_top1": float(sums[1] / max(sums[2], 1)),
        "samples_per_s": float(sums[2]) / elapsed,
        "data_wait_frac": wait_total / elapsed,
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
    shards = resolve_shards(val_dir)[rank::world]  # whole shards per rank; uneven shares are fine
    for batch in eval_batches(shards, cfg.loader, cfg.loader.batch_size) if shards else []:
        x, y = normalise_on_device(batch.x, device), batch.labels.to(device)
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
    metrics = {"val_top1": float(counts[:, 1].sum()) / n, "val_top5": float(counts[:, 2].sum()) / n,
               "val_loss": float(loss_sum) / n, "val_samples": n}
    return metrics, counts


def report_checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: IterationSchedule,
    cfg: TrainConfig,
    classes: list[str],
    epochs_done: int,
    step: int,
    metrics: dict[str, float],
    rank: int,
    workdir: str,
) -> str | None:
    """Rank 0 writes checkpoint.pt + config.yaml and hands them to Ray; every rank reports the metrics.

    Returns the path of a local copy of the checkpoint (rank 0), kept for the final model registration.
    """
    import ray.train

    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return None
    with tempfile.TemporaryDirectory(prefix="tdn-ckpt-") as tmp:
        path = os.path.join(tmp, CHECKPOINT_FILE)
        save_checkpoint(path, model, cfg.model, classes, optimizer=optimizer, scheduler=schedule,
                        epoch=epochs_done, step=step, rng=rng_state(), train_config=config_to_dict(cfg),
                        metrics=metrics)
        with open(os.path.join(tmp, "config.yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
        kept = os.path.join(workdir, CHECKPOINT_FILE)
        shutil.copyfile(path, kept)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    return kept


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
            score = {k: metrics[k] for k in ("val_top1", "val_top5", "train_loss") if k in metrics}
            name, alias = cfg.tracking.registered_model, cfg.tracking.registered_alias
            tracker.call(lambda client, run_id: console(
                f"registered {name} version "
                f"{register_checkpoint(client, run_id, tracker.experiment_id, ckpt_path, name, score, alias)}"
            ))
    tracker.close()
    if tracker.dropped:
        console(f"warning: {tracker.dropped} MLflow call(s) could not be sent to {tracker.uri}")


def console(line: str) -> None:
    """A progress line on this process's console (on a Ray Train worker, forwarded to the driver once).

    Ray Train 2.60 replaces ``print`` on its workers with one that both echoes to Ray's wrapped stdout and
    logs the same text, so every printed line reached the driver twice; writing to the process's own
    stdout sidesteps that patch and behaves like ``print`` everywhere else.
    """
    print(line, file=sys.__stdout__, flush=True)


def format_metrics(prefix: str, metrics: dict[str, float]) -> str:
    parts = []
    for k, v in metrics.items():
        if isinstance(v, float) and not float(v).is_integer():
            parts.append(f"{k} {v:.4g}")
        else:
            parts.append(f"{k} {int(v)}")
    return f"{prefix} | " + " ".join(parts)

