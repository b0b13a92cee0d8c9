"""The loop each Ray Train worker runs: one RunSpec (worker.py) -> epochs of DDP training.

    ctx = WorkerContext.from_ray(spec)         rank, world, device, the train split's index (worker.py)
    trainer = build_trainer(ctx)               seeded model + starting weights + Trainer (trainer.py)
    state = start_state(ctx, trainer)          fresh, or resumed: Ray's last checkpoint, else run.resume
    for each epoch left:
        seed(seed, epoch, rank) -> run_epoch (epoch.py: steps of trainer.train_step, rank 0's progress lines)
        -> validate (1 centre clip per video, sharded over ranks: validation.py) -> best so far? (selection.py)
        -> rank 0: summary line + MLflow metrics (run_log.py) -> checkpoint.pt to Ray (checkpointing.py)
    rank 0: config, per-class accuracy, curves, the best checkpoint logged and registered (run_log.py)

An epoch's randomness depends only on (seed, epoch, rank), so an epoch replayed from the same checkpoint
gives the same weights. Each node's local rank 0 samples system metrics into the run (system_metrics.py).
Run it with ``tdn.training.launcher.fit`` or ``python -m jobs.train``.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

import torch

from pipeline.loading.device_batch import make_decoder
from pipeline.loading.prefetch import DevicePrefetcher
from pipeline.loading.train_loader import train_loader
from tdn.model.networks import build_model_from_config
from tdn.training import metric_names as names
from tdn.training.checkpointing import CheckpointWriter, RunState, init_weights, resume_from
from tdn.training.console import console
from tdn.training.epoch import EpochProgress, EpochRunner, EpochStats
from tdn.training.failures import quiet_handled_failures
from tdn.training.fault_injection import injected_faults
from tdn.training.preemption import StopWatcher
from tdn.training.progress import print_model_summary, resume_line
from tdn.training.rng import seed_everything, seed_model_init
from tdn.training.run_log import RunLog
from tdn.training.selection import BestCheckpoint
from tdn.training.system_metrics import start_node_sampler
from tdn.training.trainer import Trainer, TrainerSettings
from tdn.training.validation import validate
from tdn.training.worker import WorkerContext


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point. ``config``: {"spec": RunSpec} (launcher.build_trainer)."""
    quiet_handled_failures()  # a bad input or a diverged loss: the job's one line says it, not Ray's traceback
    ctx = WorkerContext.from_ray(config["spec"])
    cfg = ctx.cfg
    trainer = build_trainer(ctx)
    state = start_state(ctx, trainer)
    log = RunLog.open(ctx, state)  # rank 0 only
    loader = train_loader(ctx.train_dir, cfg.loader, ctx.rank, ctx.world, state.epochs_done, cfg.run.seed)
    # batch k+1 is copied, or decoded (loader.decode: device), on the device while step k runs
    decoder = make_decoder(ctx.device) if cfg.loader.decode == "device" else None
    batches = DevicePrefetcher(loader, ctx.device, decoder)
    watcher = StopWatcher(ctx.spec.run_key)
    runner = EpochRunner(trainer, ctx.steps_per_epoch, log.reporter if log else None, watcher)
    checkpoints = CheckpointWriter(cfg, ctx.classes, ctx.rank, ctx.workdir)
    sampler = start_node_sampler(
        cfg.tracking, ctx.spec.run_key, ctx.local_rank, log.tracker if log else None, node_name()
    )
    try:
        per_class = None
        for epoch in range(state.epochs_done, cfg.optim.epochs):
            progress, state.partial = state.partial or EpochProgress(), None
            if progress.done == 0:  # else resumed inside the epoch: the checkpoint's RNG state goes on
                seed_everything(cfg.run.seed, epoch, ctx.rank)
            loader.set_epoch(epoch, progress.done)
            if runner.reporter:
                runner.reporter.start_epoch(epoch, progress.done)
            progress = runner.run(batches, progress)
            if progress.stop is not None:
                return stop_run(ctx, trainer, state, progress, log, checkpoints)
            metrics, per_class = end_of_epoch(ctx, trainer, progress.stats(trainer.schedule.lr), epoch)
            new_best = state.record_epoch(metrics)
            if log:
                log.epoch_done(state, new_best, int(per_class[:, 0].sum()) if per_class is not None else 0)
            state.last_checkpoint = checkpoints.report(trainer, state, metrics) or state.last_checkpoint
        if sampler is not None:
            sampler.stop()  # its last values reach the run before it ends
        if log:
            log.finish(state, per_class)
    finally:
        watcher.close()
        if sampler is not None:
            sampler.stop()
        if log:
            log.close("FAILED")  # nothing left to do when finish() or stop_run() closed it
        shutil.rmtree(ctx.workdir, ignore_errors=True)


def stop_run(
    ctx: WorkerContext,
    trainer: Trainer,
    state: RunState,
    progress: EpochProgress,
    log: RunLog | None,
    checkpoints: CheckpointWriter,
) -> None:
    """All ranks, after the step at which they agreed to stop: a checkpoint inside the epoch when the grace
    period leaves time for one (twice the last checkpoint's duration, at least 5 s), then the MLflow run
    ends KILLED with the reason (what is unsent stays in the write-ahead log for the resumed run)."""
    request = progress.stop
    assert request is not None
    progress = progress.summed_over_ranks()  # rank 0's checkpoint carries the whole epoch's sums so far
    left = request.deadline - time.time()
    saved = left > max(5.0, 2.0 * checkpoints.last_seconds)
    if saved:
        state.last_checkpoint = checkpoints.report(trainer, state, state.last_metrics, progress)
    if log:
        where = f"step {trainer.step} (epoch {state.epochs_done + 1}, {progress.done} of {ctx.steps_per_epoch} steps)"
        saved_text = "checkpoint saved" if saved else f"no time left for a checkpoint ({left:.0f} s)"
        console(f"stopping: {request.reason()}; stopped after {where}; {saved_text}")
        log.stop(request, trainer.step, max(1.0, request.deadline - time.time() - 2.0))


def build_trainer(ctx: WorkerContext) -> Trainer:
    """The model (seeded init: the same on every rank), its starting weights (``init``) and the Trainer."""
    seed_model_init(
        ctx.cfg.run.seed
    )  # before the model is built: its initial weights come from run.seed alone
    model = build_model_from_config(ctx.cfg.model)
    init_weights(model, ctx.cfg.init)
    settings = TrainerSettings.from_config(ctx.cfg, ctx.steps_per_epoch, ctx.world)
    return Trainer(model, settings, ctx.device, injected_faults(ctx.cfg.run, ctx.rank, ctx.world))


def start_state(ctx: WorkerContext, trainer: Trainer) -> RunState:
    """A new run's state, or the one of the checkpoint it continues: Ray's last checkpoint (a restart after a
    failure, or the same run name launched again), else ``run.resume``."""
    import ray.train

    cfg = ctx.cfg
    ray_ckpt = ray.train.get_checkpoint()
    source = (
        ray_ckpt.to_directory(os.path.join(ctx.workdir, "resumed"))
        if ray_ckpt is not None
        else cfg.run.resume
    )
    if not source:
        state = RunState(best=BestCheckpoint(cfg.checkpoint.monitor, cfg.checkpoint.mode))
    else:
        state = resume_from(source, trainer, cfg.checkpoint.monitor, cfg.checkpoint.mode)
        # where it came from (Ray's checkpoint folder, or run.resume), not the worker's scratch copy
        state.resumed_from = ray_ckpt.path if ray_ckpt is not None else state.resumed_from
        if ctx.rank == 0:
            best = state.best
            console(
                resume_line(
                    state.resumed_from, state.epochs_done, trainer.step, best.monitor, best.score, best.epoch
                )
            )
    if ctx.rank == 0:
        params = sum(p.numel() for p in trainer.model.parameters())
        print_model_summary(cfg.model, params, cfg.loader.input_size)
    return state


def end_of_epoch(
    ctx: WorkerContext, trainer: Trainer, stats: EpochStats, epoch: int
) -> tuple[dict[str, float], torch.Tensor | None]:
    """The metrics of epoch ``epoch`` (0-based; counters epoch and step included) with val/* when it
    validates, and the per-class validation counts (None when it does not)."""
    cfg = ctx.cfg
    metrics = {names.EPOCH: epoch + 1, names.STEP: trainer.step, **stats.metrics()}
    per_class = None
    if ctx.val_dir and ((epoch + 1) % cfg.run.val_every_epochs == 0 or epoch + 1 == cfg.optim.epochs):
        val, per_class = validate(trainer, ctx)
        metrics.update(val)
    return metrics, per_class


def node_name() -> str:
    """This node's name in the system metrics' keys (system/<node>/...): its IP address."""
    import ray.util

    return str(ray.util.get_node_ip_address())
