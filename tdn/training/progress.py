"""What rank 0 prints while training: progress lines with ETAs, epoch and model summaries, a resume line.

    print_model_summary(cfg.model, params, size)         model line; GFLOPs line from a background thread
    resume_line(...)                                    "resumed from <path>: epoch E done, step S, best ..."
    ProgressClock(epochs, steps_per_epoch, clock)       one per run; ``clock`` injected (tests use a fake one)
        .start_epoch(epoch) -> .eta(done) -> (epoch ETA s, run ETA s) -> .end_epoch()
    progress_line(StepProgress(...))   plain and greppable; this shape is a contract with tests and users:
        epoch 2/5  40% step 8/20 | loss 0.6931 lr 0.01 | 52.1 samples/s data 3% | mem 1.2 GiB |
            ETA epoch 0:12 run 1:05                                                      (one line)
    ConsoleBar.show(line): a live bar (carriage return) when sys.__stdout__ is a terminal, else a line

ETA arithmetic: the epoch's ETA = time per step so far in this epoch x steps left. The run's ETA adds, for
each epoch still to come, the mean wall time of the epochs this process finished (training + validation +
checkpoint); before the first one ends, the current epoch's projected training time stands in for it.
Durations print as [h:]mm:ss, minutes unpadded below an hour (``0:12``, ``1:05``, ``1:02:03``).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tdn.model.networks import ModelConfig
from tdn.training.console import console

GIB = 1024**3


def format_duration(seconds: float) -> str:
    """``75`` -> ``1:15``; ``3723`` -> ``1:02:03`` (whole seconds, rounded)."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class ProgressClock:
    """Wall-clock bookkeeping of a run for its ETAs (epochs are 0-based here, printed 1-based)."""

    epochs: int  # epochs of the whole run (optim.epochs)
    steps_per_epoch: int  # optimiser steps per epoch
    clock: Callable[[], float] = time.monotonic  # seconds; tests pass a fake one
    epoch: int = 0  # the epoch running now
    epoch_started: float = 0.0  # clock() when it started (or resumed)
    resumed_at: int = 0  # steps of the epoch done before it (re)started here
    finished: list[float] = field(default_factory=list)  # wall times of the epochs this process finished

    def start_epoch(self, epoch: int, done: int = 0) -> None:
        """``done``: steps of the epoch already done (a run resumed in the middle of it)."""
        self.epoch, self.resumed_at = epoch, done
        self.epoch_started = self.clock()

    def end_epoch(self) -> float:
        """Records and returns the epoch's wall time (validation and checkpoint included)."""
        took = self.clock() - self.epoch_started
        self.finished.append(took)
        return took

    def eta(self, done: int) -> tuple[float, float]:
        """(seconds left in this epoch, seconds left in the run) after ``done`` steps of this epoch."""
        elapsed = self.clock() - self.epoch_started
        ran = done - self.resumed_at  # steps this process ran in the epoch
        per_step = elapsed / ran if ran > 0 else 0.0
        epoch_left = per_step * (self.steps_per_epoch - done)
        done_epochs = len(self.finished)
        per_epoch = sum(self.finished) / done_epochs if done_epochs else per_step * self.steps_per_epoch
        return epoch_left, epoch_left + per_epoch * (self.epochs - self.epoch - 1)


@dataclass(frozen=True)
class StepProgress:
    """One progress line's numbers."""

    epoch: int  # 1-based
    epochs: int
    step: int  # steps done in this epoch (1-based)
    steps: int  # steps per epoch
    loss: float  # mean training loss over the last window of steps
    lr: float
    samples_per_s: float  # all workers
    data_wait_pct: float  # share of the window spent waiting for the next batch, percent
    mem_gib: float  # this process's resident memory
    gpu_gib: float | None  # CUDA max allocated on this device; None on CPU
    eta_epoch_s: float
    eta_run_s: float


def progress_line(p: StepProgress) -> str:
    pct = 100.0 * p.step / max(p.steps, 1)
    mem = f"mem {p.mem_gib:.1f} GiB" + (f" gpu {p.gpu_gib:.1f} GiB" if p.gpu_gib is not None else "")
    return (
        f"epoch {p.epoch}/{p.epochs} {pct:3.0f}% step {p.step}/{p.steps} | loss {p.loss:.4f} lr {p.lr:.4g} | "
        f"{p.samples_per_s:.1f} samples/s data {p.data_wait_pct:.0f}% | {mem} | "
        f"ETA epoch {format_duration(p.eta_epoch_s)} run {format_duration(p.eta_run_s)}"
    )


@dataclass(frozen=True)
class EpochSummary:
    """The line printed after an epoch (accuracies in percent)."""

    epoch: int  # 1-based
    epochs: int
    train_loss: float
    train_top1_pct: float
    val_top1_pct: float | None  # None: not validated this epoch
    val_top5_pct: float | None
    monitor: str  # checkpoint.monitor
    best: float | None  # its best value so far; None: not measured yet
    best_epoch: int  # 1-based epoch of the best; 0 = none
    epoch_time_s: float


def epoch_line(s: EpochSummary) -> str:
    val = (
        f"val top-1 {s.val_top1_pct:.1f}% top-5 {s.val_top5_pct:.1f}%"
        if s.val_top1_pct is not None
        else ("not validated")
    )
    best = f"best {s.monitor} {s.best:.4g} (epoch {s.best_epoch})" if s.best is not None else "best -"
    return (
        f"epoch {s.epoch}/{s.epochs} done | train loss {s.train_loss:.4f} top-1 {s.train_top1_pct:.1f}% | "
        f"{val} | {best} | {format_duration(s.epoch_time_s)}"
    )


def model_line(variant: str, arch: str, params: int, input_shape: tuple[int, ...]) -> str:
    """``model tdn resnet18: 11.3 M parameters, input (B, 8, 5, 3, 224, 224)``."""
    dims = ", ".join(str(d) for d in input_shape)
    return f"model {variant} {arch}: {params / 1e6:.2f} M parameters, input (B, {dims})"


def flops_line(variant: str, arch: str, gflops: float, size: int) -> str:
    """``model tdn resnet50: 36.64 GFLOPs per clip at 224 px`` (multiply-adds, the paper's unit)."""
    unit = "multiply-adds, the paper's unit"
    return f"model {variant} {arch}: {gflops:.3g} GFLOPs per clip at {size} px ({unit})"


def print_model_summary(model_cfg: ModelConfig, params: int, size: int) -> threading.Thread:
    """The model line now, and its GFLOPs line once counted on a background thread: counting walks the
    model on the meta device, 0.5-1 s for the tiny test model and about 5 s for ResNet-50 (measured on the
    2-core CI machine), which training should not wait for. It draws no random numbers (checked: torch,
    numpy and Python RNG states are unchanged), so the run's seeded streams are not disturbed."""
    console(model_line(model_cfg.variant, model_cfg.arch, params, (model_cfg.num_segments, 5, 3, size, size)))

    def count() -> None:
        from tdn.model.flops import count_flops

        try:
            console(flops_line(model_cfg.variant, model_cfg.arch, count_flops(model_cfg, size).gmacs, size))
        except Exception as exc:  # noqa: BLE001 - a summary line must never stop training
            console(f"model {model_cfg.variant} {model_cfg.arch}: GFLOPs not counted ({exc})")

    thread = threading.Thread(target=count, name="model-flops", daemon=True)
    thread.start()
    return thread


def resume_line(path: str, epoch: int, step: int, monitor: str, best: float | None, best_epoch: int) -> str:
    best_text = f"best {monitor} {best:.4g} at epoch {best_epoch}" if best is not None else "no best yet"
    return f"resumed from {path}: epoch {epoch} done, step {step}, {best_text}"


class ConsoleBar:
    """Progress lines: rewritten in place (carriage return) on a terminal, one line each otherwise."""

    def __init__(self, live: bool | None = None) -> None:
        self.live = sys.__stdout__ is not None and sys.__stdout__.isatty() if live is None else live
        self._open = False  # a live line is on screen without its newline

    def show(self, line: str) -> None:
        if not self.live:
            console(line)
            return
        assert sys.__stdout__ is not None
        sys.__stdout__.write("\r" + line + "\x1b[K")
        sys.__stdout__.flush()
        self._open = True

    def line(self, text: str) -> None:
        """A line that stays (epoch summary, warnings): ends a live bar first."""
        if self._open and sys.__stdout__ is not None:
            sys.__stdout__.write("\n")
            self._open = False
        console(text)


def memory_gib() -> float:
    """This process's resident memory (psutil)."""
    import psutil

    return float(psutil.Process().memory_info().rss) / GIB
