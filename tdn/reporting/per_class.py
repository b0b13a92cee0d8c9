"""Per-class top-1 as horizontal bars sorted by accuracy: per_class.png.

    ClassAccuracy per class (from the confusion matrix) -> per_class_png(classes, title) -> PNG bytes
                                                        -> per_class_csv(classes) -> per_class.csv text

Up to ``2 * SHOWN`` classes every class gets a bar, worst at the top. Above that the chart has two panels, the
``SHOWN`` worst and the ``SHOWN`` best classes; the full list is per_class.csv (and the HTML report's table).
Classes without videos have no accuracy and are left out of the chart. Bar colours: red below 50 %, orange
below 80 %, blue from 80 % (``BANDS``), explained by a legend right of the bars. Each panel is 5 in wide with
0.24 in per bar (at least 1.6 in high); the figure grows around the measured class names (fit_to_contents).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from tdn.reporting.figures import fit_to_contents, new_figure, save_figure

SHOWN = 25  # bars per panel when the classes do not fit in one chart (50 bars stay readable at 8 pt)
BAR_IN = 0.24  # inches per bar (8 pt names need ~0.15 in)
MIN_PANEL_HEIGHT_IN = 1.6  # a chart of 2 classes is still a chart, not a strip
PANEL_WIDTH_IN = 5.0  # the 0-100 % axis of each panel
PANEL_GAP_IN = 0.4  # between a panel's 100 % and the next panel's class names
DPI = 100
BANDS = (  # the bar colours (_colour), as the legend explains them
    ("tab:red", "top-1 < 50 %"),
    ("tab:orange", "50 % \u2264 top-1 < 80 %"),
    ("tab:blue", "top-1 \u2265 80 %"),
)


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


PER_CLASS_CSV_FIELDS = ("class_index", "class_name", "videos", "correct", "top1_pct")


def per_class_csv(classes: Sequence[ClassAccuracy]) -> str:
    """per_class.csv: one row per class in index order; top-1 in percent with 4 decimals ("" = no videos).

    Files written before issue 25 had the fraction in a column ``accuracy`` (0-1): ``read_per_class_csv``
    reads both."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(PER_CLASS_CSV_FIELDS)
    for c in classes:
        pct = "" if c.top1_pct is None else f"{c.top1_pct:.4f}"
        writer.writerow([c.index, c.name, c.videos, c.correct, pct])
    return buf.getvalue()


def read_per_class_csv(text: str) -> list[ClassAccuracy]:
    """per_class.csv text back into records, from either header (``top1_pct``, or the older ``accuracy``
    fraction, converted to percent)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    out = []
    for row in rows:
        if "top1_pct" in row:
            pct = float(row["top1_pct"]) if row["top1_pct"] else None
        elif "accuracy" in row:
            pct = 100.0 * float(row["accuracy"]) if row["accuracy"] else None
        else:
            raise ValueError(f"per_class.csv: no top1_pct (or accuracy) column in {sorted(row)}")
        out.append(
            ClassAccuracy(
                int(row["class_index"]), row["class_name"], int(row["videos"]), int(row["correct"]), pct
            )
        )
    return out


def by_accuracy(classes: Sequence[ClassAccuracy]) -> list[ClassAccuracy]:
    """Classes with videos, worst first (ties: more videos first, then class index)."""
    scored = [c for c in classes if c.top1_pct is not None]
    return sorted(scored, key=lambda c: (c.top1_pct, -c.videos, c.index))


def per_class_png(classes: Sequence[ClassAccuracy], title: str = "") -> bytes:
    """per_class.png: one panel with every class, or the SHOWN worst and SHOWN best side by side."""
    return save_figure(per_class_figure(classes, title), dpi=DPI)


def per_class_figure(classes: Sequence[ClassAccuracy], title: str = "") -> Figure:
    """The per-class chart, laid out: BAR_IN per bar, PANEL_WIDTH_IN of bars per panel, the figure grown
    around the measured class names, titles and the colour legend (figures.fit_to_contents)."""
    ranked = by_accuracy(classes)
    if len(ranked) <= 2 * SHOWN:
        panels = [("all classes, worst first", ranked)]
    else:
        panels = [(f"worst {SHOWN} of {len(ranked)}", ranked[:SHOWN]), (f"best {SHOWN}", ranked[-SHOWN:])]
    bars = max(len(p) for _, p in panels)
    height = max(MIN_PANEL_HEIGHT_IN, BAR_IN * bars)
    gap = 3.2  # inches between panels before the fit: room for the second panel's class names
    width = 1.0 + len(panels) * (PANEL_WIDTH_IN + gap)
    fig = new_figure(width=width, height=height + 2.0)
    fig.set_dpi(DPI)
    axes = [
        fig.add_axes(
            (
                (gap + i * (PANEL_WIDTH_IN + gap)) / width,
                1.0 / (height + 2.0),
                PANEL_WIDTH_IN / width,
                height / (height + 2.0),
            )
        )
        for i in range(len(panels))
    ]
    for ax, (label, rows) in zip(axes, panels):
        values = [c.top1_pct or 0.0 for c in rows]
        y = np.arange(len(rows))
        ax.barh(y, values, color=[_colour(v) for v in values])
        ax.set_yticks(y, labels=[f"{c.name[:40]} ({c.videos})" for c in rows], fontsize=9)
        ax.set_ylim(max(len(rows), 1) - 0.5, -0.5)  # first row (the worst) at the top
        ax.set_xlim(0, 100)
        ax.set_xlabel("top-1 (%)  —  (videos) after the name")
        ax.set_title(f"{title[:100]}\n{label}" if title and ax is axes[0] else label, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        for yi, v in zip(y, values):  # the value beside the bar, or inside it when the bar reaches the edge
            inside = v > 85.0
            ax.text(
                v - 1.0 if inside else v + 1.0,
                float(yi),
                f"{v:.1f}",
                va="center",
                fontsize=8,
                ha="right" if inside else "left",
                color="white" if inside else "black",
            )
    legend = [Patch(color=colour, label=text) for colour, text in BANDS]
    axes[-1].legend(
        handles=legend,
        title="bar colour",
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),  # outside the bars, right of the last panel: never covers one
        fontsize=8,
        title_fontsize=8,
        frameon=False,
    )
    _close_panel_gaps(fig, axes)
    fit_to_contents(fig)
    return fig


def _close_panel_gaps(fig: Figure, axes: Sequence[Axes]) -> None:
    """Move each panel after the first right next to the one before it: the measured width of its class
    names plus PANEL_GAP_IN (the panels were placed with room for any name first)."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg canvas (new_figure)
    width = fig.get_size_inches()[0]
    for before, ax in zip(axes, axes[1:]):
        names = ax.yaxis.get_tightbbox(renderer)
        names_in = 0.0 if names is None else (ax.bbox.x0 - names.x0) / fig.dpi
        pos, prev = ax.get_position(), before.get_position()
        x0 = prev.x1 + (names_in + PANEL_GAP_IN) / width
        ax.set_position((x0, pos.y0, pos.width, pos.height))


def _colour(pct: float) -> str:
    """Red below 50 %, orange below 80 %, blue above: the eye finds the weak classes first (BANDS)."""
    return "tab:red" if pct < 50 else "tab:orange" if pct < 80 else "tab:blue"
