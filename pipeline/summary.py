"""What a job prints when it ends: a few lines for a person, or (``--json``) one JSON object for a script.

    summary = Summary(
        "evaluate",
        "top-1 58.9%, top-5 100.0%, mean class top-1 58.9% on ucf101/test (56 videos, 31 s)",
        items=(Item("results", "results/eval: results.json, report.html, confusion.png"),
               Item("MLflow run", run_link(...))),        # tdn/tracking/links.py
        data={...},                                       # what --json prints
    )
    jobs.cli.finish(summary, args)       # print_summary(summary, as_json=args.json), after Ray's lines

    evaluate: done: top-1 58.9%, top-5 100.0%, mean class top-1 58.9% on ucf101/test (56 videos, 31 s)
      results     results/eval: results.json, report.html, confusion.png
      MLflow run  mlflow ui --backend-store-uri sqlite:///..., then open http://127.0.0.1:5000/#/experiments/...

The first line is always ``<job>: <status>: <headline>`` (status ``done``, or ``incomplete`` when the job
exits 1 after it: too many broken videos, a version that failed), then one indented line per item, labels
aligned. Every job that ends with a result prints one this way (``Job(summary=True)`` in jobs/cli.py gives it
``--json``); a new job (predict) builds its own Summary and ends with ``jobs.cli.finish(summary, args)``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

DONE = "done"
INCOMPLETE = "incomplete"  # the job did its work but exits 1 (it says why on its next line)


@dataclass(frozen=True)
class Item:
    """One labelled line of a summary: where an output is, a link, a command to run next."""

    label: str  # "results", "MLflow run", "resume", ...
    text: str


@dataclass(frozen=True)
class Summary:
    job: str  # the job's name, as in its error lines ("evaluate: error: ...")
    headline: str  # the key numbers, one line
    items: tuple[Item, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)  # --json: the job's machine-readable result
    status: str = DONE

    def lines(self) -> list[str]:
        width = max((len(i.label) for i in self.items), default=0)
        return [f"{self.job}: {self.status}: {self.headline}"] + [
            f"  {i.label:<{width}}  {i.text}" for i in self.items if i.text
        ]


def print_summary(summary: Summary, as_json: bool = False, stream: TextIO | None = None) -> None:
    """The summary's lines, or with ``as_json`` its ``data`` as one line of JSON (nothing else)."""
    out = stream or sys.stdout
    if as_json:
        out.write(json.dumps(summary.data, default=str) + "\n")
    else:
        out.write("\n".join(summary.lines()) + "\n")
    out.flush()


def files_in(folder: str, names: list[str], shown: int = 4) -> str:
    """``folder: a, b, c and 3 more`` (the first ``shown`` names)."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{folder}: {', '.join(names[:shown])}{more}" if names else folder


def pct(value: float | None) -> str:
    """An accuracy as the summaries print it: ``58.9%`` (``n/a`` for an unlabelled split)."""
    return "n/a" if value is None else f"{value:.1f}%"
