"""Test-only fault injection, as a step callback of the Trainer (never inside the step itself).

``run.crash_once_at_step`` / ``run.crash_marker`` (TEST_ONLY fields of RunConfig, hidden from --help): the
last rank exits once (``os._exit(1)``, like a process killed from outside) right after that global step; the
marker file records that it happened, so the restarted worker group runs through.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tdn.training.config import RunConfig
from tdn.training.console import console
from tdn.training.trainer import StepCallback, StepResult, Trainer


@dataclass(frozen=True)
class CrashOnceAtStep:
    step: int  # the global step after which the process exits
    marker: str  # file written before exiting; present = already crashed once

    def on_step_end(self, trainer: Trainer, result: StepResult) -> None:
        if result.step != self.step or os.path.exists(self.marker):
            return
        with open(self.marker, "w") as f:
            f.write(f"exited at step {result.step}\n")
        console(f"fault injection: exiting at step {result.step}")
        os._exit(1)


def injected_faults(run: RunConfig, rank: int, world: int) -> list[StepCallback]:
    """The fault-injection callbacks ``run`` asks for on this rank (none outside tests)."""
    if run.crash_once_at_step < 0 or not run.crash_marker or rank != world - 1:
        return []
    return [CrashOnceAtStep(run.crash_once_at_step, run.crash_marker)]
