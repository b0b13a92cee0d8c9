"""The one base class of errors in what a user hands in, which recur however often a step is retried.

    InputError (a ValueError)  <- ConfigError (pipeline/config.py), AnnotationError (pipeline/datasets/common.py),
                                  ContractError, CorruptShardError (pipeline/shards/contract.py),
                                  FrameDecodeError (pipeline/loading/jpeg_decode.py),
                                  CheckpointError (tdn/checkpoints/project.py)

Each message names the file (or the config key) at fault. Training ends at once on one of them instead of
restarting its workers (tdn/training/failures.py); the jobs print it as one line and exit 2 (jobs/cli.py).
"""

from __future__ import annotations


class InputError(ValueError):
    """A file or setting the user handed in is wrong: retrying cannot help. The message names it."""


class Stopped(Exception):
    """A job asked to stop (a signal) that stopped cleanly: one line, exit ``exit_code`` (143 SIGTERM, 130
    SIGINT, as a shell reports a process ended by the signal)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
