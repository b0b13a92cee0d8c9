"""The console's progress lines (tdn/training/progress.py), the best-checkpoint bookkeeping (selection.py) and
the checkpoint section of the training config: ETA arithmetic on a fake clock, exact line shapes. No Ray."""

from __future__ import annotations

import re

import pytest

from pipeline.config import ConfigError, config_from_dict
from tdn.training.config import TrainConfig
from tdn.training.progress import (
    EpochSummary,
    ProgressClock,
    StepProgress,
    epoch_line,
    format_duration,
    model_line,
    progress_line,
    resume_line,
)
from tdn.training.selection import BestCheckpoint, epoch_dir

# the shape users and tests grep (README, tests/test_quickstart.py)
PROGRESS = re.compile(
    r"^epoch \d+/\d+ +\d+% step \d+/\d+ \| loss \d+\.\d{4} lr \S+ \| \d+\.\d samples/s data \d+% \| "
    r"mem \d+\.\d GiB( gpu \d+\.\d GiB)? \| ETA epoch (\d+:)?\d+:\d\d run (\d+:)?\d+:\d\d$"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_durations_print_as_h_mm_ss():
    assert format_duration(0) == "0:00"
    assert format_duration(12.4) == "0:12"
    assert format_duration(65) == "1:05"
    assert format_duration(3723) == "1:02:03"
    assert format_duration(-3) == "0:00"


def test_eta_of_epoch_and_run_on_a_fake_clock():
    clock = FakeClock()
    progress = ProgressClock(epochs=5, steps_per_epoch=20, clock=clock)
    progress.start_epoch(0)
    clock.now += 8.0  # 8 of 20 steps in 8 s: 1 s per step
    epoch_left, run_left = progress.eta(8)
    assert epoch_left == pytest.approx(12.0)
    # before an epoch has ended, the projected epoch (20 s) stands in for each of the 4 to come
    assert run_left == pytest.approx(12.0 + 4 * 20.0)
    clock.now += 12.0 + 5.0  # the rest of the steps, then 5 s of validation and checkpoint
    assert progress.end_epoch() == pytest.approx(25.0)
    progress.start_epoch(1)
    clock.now += 4.0  # faster now: 0.5 s per step
    epoch_left, run_left = progress.eta(8)
    assert epoch_left == pytest.approx(6.0)
    assert run_left == pytest.approx(6.0 + 3 * 25.0)  # finished epochs' mean wall time (25 s) x 3 to come


def test_resumed_run_counts_only_the_epochs_left():
    clock = FakeClock()
    progress = ProgressClock(epochs=5, steps_per_epoch=10, clock=clock)
    progress.start_epoch(4)  # the last epoch, after a resume
    clock.now += 5.0
    assert progress.eta(5) == pytest.approx((5.0, 5.0))


def test_progress_line_has_the_documented_shape():
    line = progress_line(
        StepProgress(
            epoch=2,
            epochs=5,
            step=8,
            steps=20,
            loss=0.69314,
            lr=0.01,
            samples_per_s=52.08,
            data_wait_pct=3.2,
            mem_gib=1.21,
            gpu_gib=None,
            eta_epoch_s=12,
            eta_run_s=65,
        )
    )
    assert line == (
        "epoch 2/5  40% step 8/20 | loss 0.6931 lr 0.01 | 52.1 samples/s data 3% | mem 1.2 GiB | "
        "ETA epoch 0:12 run 1:05"
    )
    assert PROGRESS.match(line)
    on_gpu = progress_line(StepProgress(3, 5, 20, 20, 0.1, 1e-4, 1500.0, 0.0, 9.5, 30.26, 0, 3725))
    assert "100% step 20/20" in on_gpu and "mem 9.5 GiB gpu 30.3 GiB" in on_gpu
    assert on_gpu.endswith("ETA epoch 0:00 run 1:02:05") and PROGRESS.match(on_gpu)


def test_epoch_model_and_resume_lines():
    summary = epoch_line(EpochSummary(3, 5, 0.51234, 81.25, 75.0, 100.0, "val/top1_pct", 78.5, 2, 71.0))
    assert summary == (
        "epoch 3/5 done | train loss 0.5123 top-1 81.2% | val top-1 75.0% top-5 100.0% | "
        "best val/top1_pct 78.5 (epoch 2) | 1:11"
    )
    unvalidated = EpochSummary(1, 5, 1.0, 25.0, None, None, "val/top1_pct", None, 0, 3)
    assert "not validated" in epoch_line(unvalidated)
    assert model_line("tdn", "resnet18", 732456, (4, 5, 3, 56, 56)) == (
        "model tdn resnet18: 0.73 M parameters, input (B, 4, 5, 3, 56, 56)"
    )
    assert resume_line("/r/epoch_0003/checkpoint.pt", 3, 24, "val/top1_pct", 62.5, 2) == (
        "resumed from /r/epoch_0003/checkpoint.pt: epoch 3 done, step 24, best val/top1_pct 62.5 at epoch 2"
    )


def test_best_checkpoint_by_monitor_and_mode():
    best = BestCheckpoint("val/top1_pct", "max")
    assert not best.update({"train/epoch_loss": 1.0}, 1)  # not validated: never the best
    assert best.update({"val/top1_pct": 50.0}, 2) and (best.score, best.epoch) == (50.0, 2)
    assert not best.update({"val/top1_pct": 40.0}, 3) and not best.update({"val/top1_pct": float("nan")}, 4)
    assert best.update({"val/top1_pct": 60.0}, 5) and best.epoch == 5
    assert best.update({"val/top1_pct": 60.0}, 6) and best.epoch == 6  # a tie: the later one, as Ray ranks
    again = BestCheckpoint.from_dict(best.to_dict(), "val/top1_pct", "max")
    assert again == best
    assert BestCheckpoint.from_dict(best.to_dict(), "val/loss", "min").score is None  # another monitor
    loss = BestCheckpoint("val/loss", "min")
    assert loss.update({"val/loss": 1.0}, 1) and loss.update({"val/loss": 0.5}, 2)
    assert not loss.update({"val/loss": 0.7}, 3) and loss.epoch == 2
    assert epoch_dir(3) == "epoch_0003"


def test_checkpoint_section_rejects_unknown_monitors_and_modes():
    assert config_from_dict(TrainConfig, {}).checkpoint.monitor == "val/top1_pct"
    with pytest.raises(ConfigError, match="checkpoint.monitor must be one of .*val/top1_pct"):
        config_from_dict(TrainConfig, {"checkpoint": {"monitor": "val_top1"}})
    with pytest.raises(ConfigError, match="checkpoint.mode"):
        config_from_dict(TrainConfig, {"checkpoint": {"mode": "best"}})
    with pytest.raises(ConfigError, match="run.keep_checkpoints has moved to checkpoint.keep"):
        config_from_dict(TrainConfig, {"run": {"keep_checkpoints": 3}})
