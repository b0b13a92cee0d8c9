"""The best checkpoint of a run so far, by ``checkpoint.monitor`` (tdn/training/config.py CheckpointConfig).

    best = BestCheckpoint(monitor, mode)    a new run; resumed: BestCheckpoint.from_dict(ckpt["best"], ...)
    after each epoch: best.update(metrics, epoch) -> True when this epoch is the new best (or ties it)
        (an epoch without the monitored value, e.g. not validated, never is; without any such value at all
         the last checkpoint is the best: ``best.epoch`` stays 0)
    saved in every checkpoint as ``best`` (to_dict), so a restarted or resumed run keeps knowing its best.

Ray keeps the checkpoints the same way (launcher.py): CheckpointConfig(num_to_keep=checkpoint.keep,
checkpoint_score_attribute=monitor, checkpoint_score_order=mode), and always the latest one besides
(ray/train/v2/_internal/execution/checkpoint/checkpoint_manager.py keeps ``latest_checkpoint_result``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

# What a checkpoint without the monitored value (an epoch not validated, a stop inside an epoch) reports to Ray
# as that value: it ranks last whatever the mode, and it survives Ray's JSON snapshot of its checkpoint
# manager, where NaN and infinities come back as null and crash a resumed run's ranking (Ray 2.60, pydantic).
UNMEASURED = 1e300


def ray_score(value: float | None, mode: str) -> float:
    """The value reported to Ray for ranking: ``value``, or the one that ranks last when it is missing."""
    if value is None or math.isnan(value):
        return -UNMEASURED if mode == "max" else UNMEASURED
    return float(value)


def is_measured(value: float | None) -> bool:
    """False for a value Ray got as UNMEASURED (or a missing or NaN one)."""
    return value is not None and not math.isnan(value) and abs(value) < UNMEASURED


def epoch_dir(epoch: int) -> str:
    """A checkpoint's folder under the run's storage: ``epoch_0003`` after 3 epochs."""
    return f"epoch_{epoch:04d}"


@dataclass
class BestCheckpoint:
    monitor: str  # the metric key that ranks checkpoints, e.g. val/top1_pct
    mode: str  # "max" or "min"
    score: float | None = None  # its best value so far; None = never measured
    epoch: int = 0  # epochs done at the best checkpoint (its folder: epoch_dir(epoch)); 0 = none

    def update(self, metrics: dict[str, float], epoch: int) -> bool:
        """Take this epoch's metrics; True if its checkpoint is the new best."""
        value = metrics.get(self.monitor)
        if value is None or math.isnan(value):
            return False
        # a tie goes to the later epoch, as in Ray's ranking (checkpoint_manager._insert_into_sorted_list):
        # otherwise Ray could delete the very checkpoint counted as the best here
        better = self.score is None or (value >= self.score if self.mode == "max" else value <= self.score)
        if better:
            self.score, self.epoch = float(value), epoch
        return better

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], monitor: str, mode: str) -> BestCheckpoint:
        """Back from a checkpoint's ``best``; a different monitor or mode than this run's starts afresh."""
        if data.get("monitor") != monitor or data.get("mode") != mode:
            return cls(monitor, mode)
        score = data.get("score")
        return cls(monitor, mode, None if score is None else float(score), int(data.get("epoch", 0)))
