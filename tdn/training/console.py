"""Progress lines of a training worker: ``console(format_metrics("epoch 1/3", {"loss": 0.69, "step": 40}))``
prints ``epoch 1/3 | loss 0.69 step 40`` once on the driver's console."""

from __future__ import annotations

import sys


def console(line: str) -> None:
    """A progress line on this process's console (on a Ray Train worker, forwarded to the driver once).

    Ray Train 2.60 replaces ``print`` on its workers with one that both echoes to Ray's wrapped stdout and
    logs the same text, so every printed line reached the driver twice; writing to the process's own
    stdout sidesteps that patch and behaves like ``print`` everywhere else.
    """
    print(line, file=sys.__stdout__, flush=True)


def format_metrics(prefix: str, metrics: dict[str, float]) -> str:
    parts = []
    for k, v in metrics.items():
        if isinstance(v, float) and not float(v).is_integer():
            parts.append(f"{k} {v:.4g}")
        else:
            parts.append(f"{k} {int(v)}")
    return f"{prefix} | " + " ".join(parts)
