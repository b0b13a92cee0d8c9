"""One training epoch on one worker, and what rank 0 reports while it runs.

run_epoch(trainer, batches, steps, reporter) -> EpochStats (all-reduced over ranks)
  for each of ``steps`` batches x (B, T, 5, 3, S, S), y (B,):
      wait for the batch (timed: the data wait) -> trainer.train_step(x, y) (tdn/training/trainer.py)
      rank 0's reporter: every log_every steps a progress line (tdn/training/progress.py; none at the
      epoch's last step, whose summary line follows) and the train/* step metrics
      (tdn/training/metric_names.py) at step = the global step
EpochStats.metrics() -> train/epoch_loss, train/epoch_top1_pct (percent), ... for the epoch's report
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from pipeline.loading.prefetch import batch_on_device
from tdn.tracking.tracker import Tracker
from tdn.training import metric_names as names
from tdn.training.preemption import StopRequest, StopWatcher
from tdn.training.progress import GIB, ConsoleBar, ProgressClock, StepProgress, memory_gib, progress_line
from tdn.training.trainer import StepResult, Trainer


@dataclass
class StepWindow:
    """The steps since the last progress line: what the next line and the step metrics average over."""

    started: float = field(default_factory=time.perf_counter)
    loss_sum: float = 0.0
    waits: list[float] = field(default_factory=list)  # seconds each step waited for its batch

    def add(self, result: StepResult, wait: float) -> None:
        self.loss_sum += result.loss
        self.waits.append(wait)

    @property
    def steps(self) -> int:
        return len(self.waits)


@dataclass
class ProgressReporter:
    """Rank 0's progress lines and train/* step metrics, every ``log_every`` steps and at an epoch's end."""

    log_every: int  # run.log_every_steps
    samples_per_step: int  # global batch: loader.batch_size x world size
    clock: ProgressClock  # the run's ETAs
    bar: ConsoleBar
    tracker: Tracker | None  # None: no MLflow run (tracking off)
    window: StepWindow = field(default_factory=StepWindow)

    def start_epoch(self, epoch: int, done: int = 0) -> None:
        self.clock.start_epoch(epoch, done)
        self.window = StepWindow()

    def on_step(self, trainer: Trainer, done: int, result: StepResult, wait: float) -> None:
        """After the epoch's ``done``-th step."""
        self.window.add(result, wait)
        steps = self.clock.steps_per_epoch
        if self.window.steps < self.log_every and done < steps:
            return
        w, elapsed = self.window, time.perf_counter() - self.window.started
        logged = {
            names.LOSS: w.loss_sum / w.steps,
            names.LR: result.lr,
            names.SAMPLES_PER_S: w.steps * self.samples_per_step / elapsed,
            names.DATA_WAIT_PCT: 100.0 * sum(w.waits) / elapsed,
            names.NEXT_BATCH_P50_S: float(np.percentile(w.waits, 50)),
            names.NEXT_BATCH_P95_S: float(np.percentile(w.waits, 95)),
        }
        eta_epoch, eta_run = self.clock.eta(done)
        gpu = torch.cuda.max_memory_allocated(trainer.device) / GIB if trainer.cuda else None
        progress = StepProgress(
            epoch=self.clock.epoch + 1,
            epochs=self.clock.epochs,
            step=done,
            steps=steps,
            loss=logged[names.LOSS],
            lr=result.lr,
            samples_per_s=logged[names.SAMPLES_PER_S],
            data_wait_pct=logged[names.DATA_WAIT_PCT],
            mem_gib=memory_gib(),
            gpu_gib=gpu,
            eta_epoch_s=eta_epoch,
            eta_run_s=eta_run,
        )
        if done < steps:  # the epoch's last step: its summary line follows (RunLog.epoch_done), not this one
            self.bar.show(progress_line(progress))
        if self.tracker:
            self.tracker.log_metrics({names.mlflow_key(k): v for k, v in logged.items()}, step=result.step)
        self.window = StepWindow()


@dataclass(frozen=True)
class EpochStats:
    """An epoch's training numbers, summed over all ranks."""

    loss: float  # mean per-sample loss
    top1_pct: float
    samples_per_s: float  # all ranks
    data_wait_pct: float  # this rank's share of the epoch spent waiting for batches
    lr: float  # learning rate after the epoch's last step
    seconds: float  # wall time of the epoch's steps (validation and checkpoint not included)

    def metrics(self) -> dict[str, float]:
        return {
            names.EPOCH_LOSS: self.loss,
            names.EPOCH_TOP1_PCT: self.top1_pct,
            names.EPOCH_SAMPLES_PER_S: self.samples_per_s,
            names.EPOCH_DATA_WAIT_PCT: self.data_wait_pct,
            names.LR: self.lr,
            names.EPOCH_TIME_S: self.seconds,
        }


@dataclass
class EpochProgress:
    """An epoch's running sums on this rank; a checkpoint taken in the middle of the epoch keeps them (summed
    over the ranks) so the resumed epoch's numbers are those of the whole epoch."""

    done: int = 0  # steps of the epoch done
    loss_sum: float = 0.0  # loss x samples
    correct: float = 0.0
    samples: float = 0.0
    wait_s: float = 0.0  # time spent waiting for batches
    seconds: float = 0.0  # wall time of the steps
    stop: StopRequest | None = None  # set when the run was asked to stop after step ``done``

    def sums(self) -> torch.Tensor:
        return torch.tensor(
            [self.loss_sum, self.correct, self.samples, self.wait_s, self.seconds], dtype=torch.float64
        )

    def to_list(self) -> list[float]:
        """For a checkpoint: [done, loss_sum, correct, samples, wait_s, seconds]."""
        return [float(self.done), *self.sums().tolist()]

    @classmethod
    def from_list(cls, values: list[float]) -> EpochProgress:
        done, loss_sum, correct, samples, wait_s, seconds = values
        return cls(int(done), loss_sum, correct, samples, wait_s, seconds)

    def summed_over_ranks(self) -> EpochProgress:
        """The same progress with every rank's sums (a collective: all ranks call it at the same step)."""
        sums = self.sums()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
        loss_sum, correct, samples, wait_s, seconds = sums.tolist()
        return EpochProgress(self.done, loss_sum, correct, samples, wait_s, seconds, self.stop)

    def stats(self, lr: float) -> EpochStats:
        """The finished epoch's numbers over all ranks (a collective)."""
        wait_here, seconds = self.wait_s, max(self.seconds, 1e-9)
        total = self.summed_over_ranks()
        samples = max(total.samples, 1.0)
        return EpochStats(
            loss=total.loss_sum / samples,
            top1_pct=100.0 * total.correct / samples,
            samples_per_s=total.samples / seconds,
            data_wait_pct=100.0 * wait_here / seconds,
            lr=lr,
            seconds=seconds,
        )


@dataclass
class EpochRunner:
    """Runs an epoch's steps on this rank (every rank runs the same number) with rank 0's reporter and the
    run's stop watcher (tdn/training/preemption.py), which can end the epoch after any step."""

    trainer: Trainer
    steps_per_epoch: int
    reporter: ProgressReporter | None  # rank 0
    watcher: StopWatcher | None = None

    def run(self, batches: Iterable[tuple[Any, torch.Tensor]], progress: EpochProgress) -> EpochProgress:
        """The steps after ``progress.done`` (0: the whole epoch), until the epoch ends or a stop is agreed."""
        trainer = self.trainer
        it = iter(batches)
        while progress.done < self.steps_per_epoch:
            t_wait = time.perf_counter()
            x, y = next(it)
            # Batches from a DevicePrefetcher are already there; others are moved (uint8 ones normalised there)
            x, y = batch_on_device(x, trainer.device), y.to(trainer.device, non_blocking=True)
            wait = time.perf_counter() - t_wait
            result = trainer.train_step(x, y)
            progress.done += 1
            progress.loss_sum += result.loss * result.samples
            progress.correct += result.correct
            progress.samples += result.samples
            progress.wait_s += wait
            progress.seconds += time.perf_counter() - t_wait
            if self.reporter is not None:
                self.reporter.on_step(trainer, progress.done, result, wait)
            if self.watcher is not None:
                progress.stop = self.watcher.agreed(trainer.device)
                if progress.stop is not None:
                    break
        return progress
