"""Which worker failures Ray Train retries: lost workers and nodes only; a bad input ends the run at once.

    worker raises InputError (pipeline/errors.py: a corrupt shard, a bad index, an unreadable JPEG, a
    checkpoint that does not fit), FileNotFoundError (a missing shard or weights file) or InputShapeError
    (tdn/model: batches of another shape than the model takes)
      -> the controller polls the worker group -> StopOnInputError.after_worker_group_poll_status
      -> raises ControllerError(WorkerInputError): Ray Train's failure policy never retries a controller
         error of that kind, so the worker group is shut down and ``trainer.fit()`` raises it
      -> launcher.fit re-raises the WorkerInputError (an InputError: jobs/train.py prints one line, exit 2)
    worker raises NonFiniteError (a NaN or infinite loss or gradient norm) -> the same way, as TrainingDiverged
      (not an input error: jobs/train.py says it failed, exit 1)
    any other worker failure (a killed worker or node, an error of the code) -> Ray's default policy:
      restart the worker group from the last checkpoint, up to run.max_failures times

Ray Train 2.60 (V2) builds its failure policy from ``FailureConfig`` alone, with no way to add rules; a
worker-group callback (RunConfig.callbacks) sees every poll's errors first, and a ``ControllerError`` it raises
is not retried (ray/train/v2/_internal/execution/failure_handling/default.py). The callback runs in the
controller actor and counts the worker groups it saw start, so the error says on which attempt it came.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from ray.train.v2._internal.execution.callback import WorkerGroupCallback
from ray.train.v2.api.exceptions import ControllerError

from pipeline.errors import InputError
from tdn.model.networks import InputShapeError
from tdn.training.trainer import NonFiniteError

if TYPE_CHECKING:
    from ray.train.v2._internal.execution.worker_group import WorkerGroup, WorkerGroupPollStatus

NOT_RETRIED: tuple[type[BaseException], ...] = (InputError, FileNotFoundError, InputShapeError)


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


class TrainingDiverged(Exception):
    """A worker's loss or gradient norm became NaN or infinite (tdn/training/trainer.py NonFiniteError): the
    run ended without restarting its workers, which would only diverge again from the same checkpoint."""

    def __reduce__(self) -> tuple[type[TrainingDiverged], tuple[str]]:
        return (type(self), (str(self),))


class StopOnInputError(WorkerGroupCallback):
    """Ends the run at the first worker error of a ``NOT_RETRIED`` type, or a diverged loss (see the module
    docstring)."""

    def __init__(self) -> None:
        self.attempts = 0  # worker groups started in this run (1 = the first)

    def after_worker_group_start(self, worker_group: WorkerGroup) -> None:
        self.attempts += 1
        quiet_handled_failures()  # runs in the controller's process

    def after_worker_group_poll_status(self, worker_group_status: WorkerGroupPollStatus) -> None:
        for rank, error in sorted(worker_group_status.errors.items()):
            if isinstance(error, NonFiniteError):
                raise ControllerError(TrainingDiverged(f"{one_line(error)} (training worker {rank})"))
            if isinstance(error, NOT_RETRIED):
                message = f"{one_line(error)} (training worker {rank}; not retried: the input is at fault)"
                raise ControllerError(WorkerInputError(message, rank, self.attempts))


HANDLED: tuple[type[BaseException], ...] = (*NOT_RETRIED, NonFiniteError, WorkerInputError, TrainingDiverged)
# Ray Train's loggers that print a failure this module ends the run on, with its traceback: the worker's
# "Error in training function" and the controller's "[FailurePolicy] RAISE" (ray 2.60 module names). The job
# prints the same failure as its one line (jobs/train.py); other failures keep Ray's full report.
RAY_FAILURE_LOGGERS = (
    "ray.train.v2._internal.util",
    "ray.train.v2._internal.execution.failure_handling.default",
)


class _DropHandledFailures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        if isinstance(exc, ControllerError):
            exc = exc.controller_failure
        return not isinstance(exc, HANDLED)


def quiet_handled_failures() -> None:
    """In this process (a training worker, the controller): Ray's own report of a failure that ends the run
    by this module's rules is left out (idempotent)."""
    for name in RAY_FAILURE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropHandledFailures) for f in logger.filters):
            logger.addFilter(_DropHandledFailures())


def input_error_of(exc: BaseException) -> WorkerInputError | TrainingDiverged | None:
    """The WorkerInputError or TrainingDiverged that ended a run, from the error ``trainer.fit()`` raised
    (else None)."""
    failure = exc.controller_failure if isinstance(exc, ControllerError) else None
    return failure if isinstance(failure, (WorkerInputError, TrainingDiverged)) else None
