"""Which worker failures Ray Train retries: lost workers and nodes only; a bad input ends the run at once.

    worker raises InputError (pipeline/errors.py: a corrupt shard, a bad index, an unreadable JPEG, a
    checkpoint that does not fit) or FileNotFoundError (a missing shard or weights file)
      -> the controller polls the worker group -> StopOnInputError.after_worker_group_poll_status
      -> raises ControllerError(WorkerInputError): Ray Train's failure policy never retries a controller
         error of that kind, so the worker group is shut down and ``trainer.fit()`` raises it
      -> launcher.fit re-raises the WorkerInputError (an InputError: jobs/train.py prints one line, exit 2)
    any other worker failure (a killed worker or node, an error of the code) -> Ray's default policy:
      restart the worker group from the last checkpoint, up to run.max_failures times

Ray Train 2.60 (V2) builds its failure policy from ``FailureConfig`` alone, with no way to add rules; a
worker-group callback (RunConfig.callbacks) sees every poll's errors first, and a ``ControllerError`` it raises
is not retried (ray/train/v2/_internal/execution/failure_handling/default.py). The callback runs in the
controller actor and counts the worker groups it saw start, so the error says on which attempt it came.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray.train.v2._internal.execution.callback import WorkerGroupCallback
from ray.train.v2.api.exceptions import ControllerError

from pipeline.errors import InputError

if TYPE_CHECKING:
    from ray.train.v2._internal.execution.worker_group import WorkerGroup, WorkerGroupPollStatus

NOT_RETRIED: tuple[type[BaseException], ...] = (InputError, FileNotFoundError)


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line. An error raised in a DataLoader worker process comes back as the
    same type whose message carries the original traceback: its last line is the original message."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        name, sep, message = last.partition(": ")
        text = message if sep and name.rsplit(".", 1)[-1] == type(exc).__name__ else last
    return " ".join(text.split())


class WorkerInputError(InputError):
    """A training worker hit a bad input; the run ended without restarting its workers."""

    def __init__(self, message: str, rank: int, attempt: int) -> None:
        super().__init__(message)
        self.rank, self.attempt = rank, attempt

    def __reduce__(self) -> tuple[type[WorkerInputError], tuple[str, int, int]]:
        return (type(self), (str(self), self.rank, self.attempt))


class StopOnInputError(WorkerGroupCallback):
    """Ends the run at the first worker error of a ``NOT_RETRIED`` type (see the module docstring)."""

    def __init__(self) -> None:
        self.attempts = 0  # worker groups started in this run (1 = the first)

    def after_worker_group_start(self, worker_group: WorkerGroup) -> None:
        self.attempts += 1

    def after_worker_group_poll_status(self, worker_group_status: WorkerGroupPollStatus) -> None:
        for rank, error in sorted(worker_group_status.errors.items()):
            if isinstance(error, NOT_RETRIED):
                message = f"{one_line(error)} (training worker {rank}; not retried: the input is at fault)"
                raise ControllerError(WorkerInputError(message, rank, self.attempts))


def input_error_of(exc: BaseException) -> WorkerInputError | None:
    """The WorkerInputError that ended a run, from the error ``trainer.fit()`` raised (else None)."""
    failure = exc.controller_failure if isinstance(exc, ControllerError) else None
    return failure if isinstance(failure, WorkerInputError) else None
