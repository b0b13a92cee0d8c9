"""One training epoch on one worker, and what rank 0 reports while it runs.

for each batch x (B, T, 5, 3, S, S), y (B,):
    loss = CE(model(x), y) [bf16 autocast on GPU] -> backward -> clip 20 -> SGD step -> lr for next iter
    every run.log_every_steps steps, rank 0: a progress line (tdn/training/progress.py) and the train/*
    step metrics (tdn/training/metric_names.py) at step = the global step
-> epoch stats, all-reduced over ranks: train/epoch_loss, train/epoch_top1_pct, ... (percent)
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from pipeline.loading.prefetch import batch_on_device
from tdn.tracking.tracker import Tracker
from tdn.training import metric_names as names
from tdn.training.config import TrainConfig
from tdn.training.console import console
from tdn.training.optim import IterationSchedule, clip_gradients
from tdn.training.progress import GIB, ConsoleBar, ProgressClock, StepProgress, memory_gib, progress_line


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
    clock: ProgressClock,
    bar: ConsoleBar,
) -> tuple[dict[str, float], int]:
    """One pass over this rank's share of the shards. Returns (epoch stats averaged over ranks, global
    step)."""
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
                names.LOSS: window["loss"] / window["n"],
                names.LR: schedule.lr_at(step - 1),
                names.SAMPLES_PER_S: window["n"] * cfg.loader.batch_size * world / elapsed,
                names.DATA_WAIT_PCT: 100.0 * window["wait"] / elapsed,
                names.NEXT_BATCH_P50_S: float(np.percentile(recent, 50)),
                names.NEXT_BATCH_P95_S: float(np.percentile(recent, 95)),
            }
            eta_epoch, eta_run = clock.eta(i + 1)
            gpu = torch.cuda.max_memory_allocated(device) / GIB if cuda else None
            bar.show(progress_line(StepProgress(
                epoch + 1, cfg.optim.epochs, i + 1, steps_per_epoch, logged[names.LOSS], logged[names.LR],
                logged[names.SAMPLES_PER_S], logged[names.DATA_WAIT_PCT], memory_gib(), gpu,
                eta_epoch, eta_run,
            )))  # fmt: skip
            if tracker:
                tracker.log_metrics(logged, step=step)
            window = {"loss": 0.0, "n": 0, "wait": 0.0, "t0": time.perf_counter()}
    elapsed = time.perf_counter() - epoch_t0
    wait_total = float(sums[3])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    samples = max(float(sums[2]), 1.0)
    return {
        names.EPOCH_LOSS: float(sums[0]) / samples,  # float64 either way: same numbers
        names.EPOCH_TOP1_PCT: 100.0 * float(sums[1]) / samples,
        names.EPOCH_SAMPLES_PER_S: float(sums[2]) / elapsed,
        names.EPOCH_DATA_WAIT_PCT: 100.0 * wait_total / elapsed,
        names.LR: schedule.lr,
    }, step


def maybe_crash(cfg: TrainConfig, step: int, rank: int, world: int) -> None:
    """Test hook: the last rank dies once (os._exit, like a lost process) at the configured global step."""
    if cfg.run.crash_once_at_step != step or rank != world - 1 or not cfg.run.crash_marker:
        return
    if os.path.exists(cfg.run.crash_marker):
        return
    with open(cfg.run.crash_marker, "w") as f:
        f.write(f"rank {rank} exited at step {step}\n")
    console(f"[rank {rank}] fault injection: exiting at step {step}")
    os._exit(1)
