"""Per-class top-1 as horizontal bars sorted by accuracy: per_class.png.

    ClassAccuracy per class (from the confusion matrix) -> per_class_png(classes, title) -> PNG bytes

Up to ``2 * SHOWN`` classes every class gets a bar, worst at the top. Above that the chart has two panels, the
``SHOWN`` worst and the ``SHOWN`` best classes; the full list is per_class.csv (and the HTML report's table).
Classes without videos have no accuracy and are left out of the chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tdn.reporting.figures import new_figure, save_figure

SHOWN = 25  # bars per panel when the classes do not fit in one chart (50 bars stay readable at 8 pt)


@dataclass(frozen=True)
class ClassAccuracy:
    """One class of an evaluation."""

    index: int  # class index
    name: str
    videos: int  # labelled videos of this class
    correct: int  # of which top-1 correct
    top1_pct: float | None  # correct / videos, percent; None when the class has no videos


def class_accuracies(cm: np.ndarray, names: Sequence[str]) -> list[ClassAccuracy]:
    """One record per class from a (C, C) confusion matrix (rows = true class), in class-index order."""
    cm = np.asarray(cm)
    rows = cm.sum(axis=1)
    return [
        ClassAccuracy(
            index=i,
            name=str(names[i]),
            videos=int(rows[i]),
            correct=int(cm[i, i]),
            top1_pct=100.0 * float(cm[i, i]) / float(rows[i]) if rows[i] else None,
        )
        for i in range(cm.shape[0])
    ]


def by_accuracy(classes: Sequence[ClassAccuracy]) -> list[ClassAccuracy]:
    """Classes with videos, worst first (ties: more videos first, then class index)."""
    scored = [c for c in classes if c.top1_pct is not None]
    return sorted(scored, key=lambda c: (c.top1_pct, -c.videos, c.index))


def per_class_png(classes: Sequence[ClassAccuracy], title: str = "") -> bytes:
    """per_class.png: one panel with every class, or the SHOWN worst and SHOWN best side by side."""
    ranked = by_accuracy(classes)
    if len(ranked) <= 2 * SHOWN:
        panels = [("all classes, worst first", ranked)]
    else:
        panels = [(f"worst {SHOWN} of {len(ranked)}", ranked[:SHOWN]), (f"best {SHOWN}", ranked[-SHOWN:])]
    bars = max(len(p) for _, p in panels)
    fig = new_figure(width=6.5 * len(panels), height=1.3 + 0.24 * max(bars, 1))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, rows) in zip(axes, panels):
        values = [c.top1_pct or 0.0 for c in rows]
        y = np.arange(len(rows))
        ax.barh(y, values, color=[_colour(v) for v in values])
        ax.set_yticks(y, labels=[f"{c.name[:32]} ({c.videos})" for c in rows], fontsize=8)
        ax.invert_yaxis()  # first row (the worst) at the top
        ax.set_xlim(0, 100)
        ax.set_xlabel("top-1 (%)  —  (videos) after the name")
        ax.set_title(label, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        for yi, v in zip(y, values):  # the value beside the bar, or inside it when the bar reaches the edge
            inside = v > 85.0
            ax.text(v - 1.0 if inside else v + 1.0, yi, f"{v:.1f}", va="center", fontsize=7,
                    ha="right" if inside else "left", color="white" if inside else "black")  # fmt: skip
    if title:
        fig.suptitle(title[:100], fontsize=9)
    fig.tight_layout()
    return save_figure(fig, dpi=90)


def _colour(pct: float) -> str:
    """Red below 50 %, orange below 80 %, blue above: the eye finds the weak classes first."""
    return "tab:red" if pct < 50 else "tab:orange" if pct < 80 else "tab:blue"
