"""A line from a training worker, printed once on the driver's console: ``console("epoch 1/3 done | ...")``.
What the lines say is tdn/training/progress.py's."""

from __future__ import annotations

import sys


def console(line: str) -> None:
    """A progress line on this process's console (on a Ray Train worker, forwarded to the driver once).

    Ray Train 2.60 replaces ``print`` on its workers with one that both echoes to Ray's wrapped stdout and
    logs the same text, so every printed line reached the driver twice; writing to the process's own
    stdout sidesteps that patch and behaves like ``print`` everywhere else.
    """
    print(line, file=sys.__stdout__, flush=True)
