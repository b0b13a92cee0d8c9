"""The confusion matrix as a picture that stays legible from 5 to 400 classes, and its most-confused pairs.

    cm (C, C) counts, rows = true class
        ├─ most_confused(cm, names, top)   -> [ConfusedPair], largest off-diagonal counts first
        │    └─ most_confused_csv(pairs)   -> most_confused.csv text
        └─ confusion_png(cm, names, title) -> confusion.png bytes

How the picture scales with the class count C:
    C <= 30   classes in index order, every class named on both axes, the count written in each non-zero cell;
              cells of 0.9 in (up to 6 classes) down to 0.32 in, counts at ~40 % of the cell's height (14 pt
              at 4 classes, ~9.7 pt at 30), 100 dpi
    C >  30   no text in cells; classes reordered so that classes confused with each other sit side by side
              (chained order, below), every k-th class named (about 50 names per axis); the matrix grows to
              15 in at 120 dpi, 4.5 px per cell at 400 classes
Layout (``confusion_figure``): the matrix gets its size in inches, x tick labels stay horizontal when the widest
fits between two ticks (measured), else turn 45 or 90 degrees, and the figure is then grown around the measured
labels, title and colour bar (figures.fit_to_contents): class names are shown whole, nothing is cut at the
edge of MLflow's artifact viewer.
Colour is the count through a power norm (gamma 0.4) with a colour bar: with 50 videos per class the diagonal
holds ~40 and a typical confusion 1-2, which a linear scale paints white; gamma 0.4 makes a count of 1 about
a fifth of the way up the scale (1/40 ** 0.4 = 0.23); the map starts at a light blue and 0 is white.

Chained order (``class_order``): classes that trade videos are placed next to each other, so confusion shows up
as blocks beside the diagonal instead of dots spread over a 400 x 400 square. A sort by the Laplacian's Fiedler
vector was tried first: one vector cannot separate 40 groups of 10, and on the test matrix the groups stayed
scattered; the greedy chain below put them as blocks on the diagonal.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, PowerNorm
from matplotlib.figure import Figure

from tdn.reporting.figures import fit_to_contents, new_figure, save_figure

ANNOTATE_MAX_CLASSES = 30  # above this, no per-cell counts and classes reordered (see module docstring)
AXIS_NAMES = 50  # at most this many class names per axis on a large matrix
CHAIN_MEMORY = 4  # class_order links a class to the last this many placed ones
GAMMA = 0.4  # power norm of the colour scale (module docstring)
MAX_CELL_IN, MIN_CELL_IN = 0.9, 0.32  # cell side up to 30 classes: 0.32 in = 32 px, room for a 3-digit count
MAX_MATRIX_IN = 15.0  # the matrix side above 30 classes: 15 in at 120 dpi = 1800 px, 4.5 px per class at 400
LABEL_MAX_CHARS = 48  # longer class names end in an ellipsis (a guard: the layout fits any length)
SMALL_DPI, LARGE_DPI = 100, 120


@dataclass(frozen=True)
class ConfusedPair:
    """Videos of one true class predicted as one other class."""

    true_index: int  # class index of the true label
    true_name: str
    predicted_index: int  # class index of the (wrong) top-1 prediction
    predicted_name: str
    count: int  # videos of the true class predicted as this class
    share_pct: float  # count / videos of the true class, percent


def most_confused(cm: np.ndarray, names: Sequence[str], top: int = 20) -> list[ConfusedPair]:
    """The ``top`` largest off-diagonal cells (count > 0): by count, then share, then class indices."""
    cm = np.asarray(cm)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    rows = cm.sum(axis=1)
    true_idx, pred_idx = np.nonzero(off > 0)
    pairs = [
        ConfusedPair(
            true_index=int(t),
            true_name=str(names[t]),
            predicted_index=int(p),
            predicted_name=str(names[p]),
            count=int(off[t, p]),
            share_pct=100.0 * float(off[t, p]) / float(rows[t]),
        )
        for t, p in zip(true_idx.tolist(), pred_idx.tolist())
    ]
    pairs.sort(key=lambda q: (-q.count, -q.share_pct, q.true_index, q.predicted_index))
    return pairs[:top]


def most_confused_csv(pairs: Sequence[ConfusedPair]) -> str:
    """most_confused.csv: true class, predicted class (index and name), count, share of the true class (%)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["true_index", "true_class", "predicted_index", "predicted_class", "count", "share_of_true_class_pct"]
    )
    for q in pairs:
        writer.writerow(
            [q.true_index, q.true_name, q.predicted_index, q.predicted_name, q.count, f"{q.share_pct:.2f}"]
        )
    return buf.getvalue()


def class_order(cm: np.ndarray) -> np.ndarray:
    """Index order for drawing: as is up to ANNOTATE_MAX_CLASSES classes, confusion chains above.

    Greedy chaining on the symmetrised off-diagonal counts w: start at the class with the most errors, then
    repeatedly append the unplaced class most confused with the last ``CHAIN_MEMORY`` placed ones; when none
    is confused with them, restart at the unplaced class with the most errors. Ties go to the lower index.
    """
    c = cm.shape[0]
    if c <= ANNOTATE_MAX_CLASSES:
        return np.arange(c)
    w = np.asarray(cm, dtype=np.float64)
    w = w + w.T
    np.fill_diagonal(w, 0.0)
    errors = w.sum(axis=1)
    placed = np.zeros(c, dtype=bool)
    order: list[int] = []
    while len(order) < c:
        affinity = w[order[-CHAIN_MEMORY:]].sum(axis=0) if order else np.zeros(c)
        affinity[placed] = -1.0
        best = int(np.argmax(affinity))
        if affinity[best] <= 0.0:
            best = int(np.argmax(np.where(placed, -1.0, errors)))
        order.append(best)
        placed[best] = True
    return np.asarray(order)


def confusion_png(cm: np.ndarray, names: Sequence[str], title: str = "") -> bytes:
    """confusion.png: counts, rows = true class (see the module docstring for how it scales)."""
    small = np.asarray(cm).shape[0] <= ANNOTATE_MAX_CLASSES
    return save_figure(confusion_figure(cm, names, title), dpi=SMALL_DPI if small else LARGE_DPI)


def cell_inches(c: int) -> float:
    """The side of one cell: 0.9 in up to 6 classes, shrinking to 0.32 in (annotated, up to 30 classes),
    then a matrix of 7 in + 0.0225 in per class, at most 15 in (0.0375 in = 4.5 px per class at 400)."""
    if c <= ANNOTATE_MAX_CLASSES:
        return min(MAX_CELL_IN, max(MIN_CELL_IN, 5.4 / max(c, 1)))
    return min(7.0 + 0.0225 * c, MAX_MATRIX_IN) / c


def count_fontsize(cell_in: float, vmax: int) -> float:
    """Points for the counts written in the cells: about 40 % of the cell's height, narrower than the cell
    for the widest count (a digit is ~0.6 em wide), at most 14 pt."""
    cell_pt = cell_in * 72.0
    digits = len(str(max(int(vmax), 1)))
    return min(14.0, 0.42 * cell_pt, 0.8 * cell_pt / (0.6 * digits))


def confusion_figure(cm: np.ndarray, names: Sequence[str], title: str = "") -> Figure:
    """The confusion figure, laid out: the matrix has ``cell_inches(C)`` per class, the figure grows around
    the measured labels (figures.fit_to_contents) so no class name is cut."""
    cm = np.asarray(cm)
    c = cm.shape[0]
    order = class_order(cm)
    shown = cm[np.ix_(order, order)]
    small = c <= ANNOTATE_MAX_CLASSES
    cell = cell_inches(c)
    side = cell * c
    fig = new_figure(width=side + 4.0, height=side + 4.0)
    fig.set_dpi(SMALL_DPI if small else LARGE_DPI)
    w, h = fig.get_size_inches()
    ax = fig.add_axes((2.0 / w, 2.0 / h, side / w, side / h))
    cax = fig.add_axes(((2.0 + side + 0.15) / w, 2.0 / h, 0.22 / w, side / h))
    vmax = max(int(shown.max()), 1)
    # Blues from 25% up, zero cells masked to white: a single confused video is a visible blue, not near-white
    cmap = ListedColormap(colormaps["Blues"](np.linspace(0.25, 1.0, 256))).with_extremes(bad="white")
    im = ax.imshow(
        np.ma.masked_equal(shown, 0),
        cmap=cmap,
        norm=PowerNorm(GAMMA, vmin=0, vmax=vmax),
        interpolation="nearest",
        aspect="auto",  # the axes box is already square, cell x cell per class
    )
    bar = fig.colorbar(im, cax=cax)
    bar.set_label("videos (count; power scale)")
    step = 1 if small else math.ceil(c / AXIS_NAMES)
    ticks = list(range(0, c, step))
    labels = [_label(names[order[i]]) for i in ticks]
    fontsize = 10.0 if c <= 15 else 9.0 if small else 7.0
    ax.set_xticks(ticks, labels=labels, fontsize=fontsize)
    ax.set_yticks(ticks, labels=labels, fontsize=fontsize)
    _rotate_x_labels_unless_they_fit(fig, ax, spacing_in=step * cell, small=small)
    if small:
        size = count_fontsize(cell, vmax)
        for t in range(c):
            for p in range(c):
                if shown[t, p]:
                    dark = (shown[t, p] / vmax) ** GAMMA > 0.6
                    ax.text(
                        p,
                        t,
                        str(int(shown[t, p])),
                        ha="center",
                        va="center",
                        fontsize=size,
                        color="white" if dark else "black",
                    )
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
    else:
        named = "every class named" if step == 1 else f"1 name in {step}"
        ax.set_xlabel(f"predicted class ({named}; mutually confused classes side by side)")
        ax.set_ylabel("true class (same order)")
    ax.set_title(title[:100], fontsize=10)
    fit_to_contents(fig)
    return fig


def _label(name: object) -> str:
    """A class name as shown on an axis: whole up to LABEL_MAX_CHARS (longer ones end in an ellipsis)."""
    text = str(name)
    return text if len(text) <= LABEL_MAX_CHARS else text[: LABEL_MAX_CHARS - 1] + "\u2026"


def _rotate_x_labels_unless_they_fit(fig: Figure, ax: Axes, spacing_in: float, small: bool) -> None:
    """Horizontal x tick labels when the widest fits between two ticks, else 45 degrees (up to 30 classes)
    or 90 (above, where the ticks are a few pixels apart). Widths measured by the renderer."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg canvas (new_figure)
    labels = ax.get_xticklabels()
    widest = max((t.get_window_extent(renderer).width for t in labels), default=0.0)
    if widest <= 0.9 * spacing_in * fig.dpi:
        return
    for t in labels:
        if small:
            t.set(rotation=45, ha="right", rotation_mode="anchor")
        else:
            t.set(rotation=90, ha="center")
