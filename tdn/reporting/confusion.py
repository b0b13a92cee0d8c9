"""The confusion matrix as a picture that stays legible from 5 to 400 classes, and its most-confused pairs.

    cm (C, C) counts, rows = true class
        ├─ most_confused(cm, names, top)   -> [ConfusedPair], largest off-diagonal counts first
        │    └─ most_confused_csv(pairs)   -> most_confused.csv text
        └─ confusion_png(cm, names, title) -> confusion.png bytes

How the picture scales with the class count C:
    C <= 30   classes in index order, every class named on both axes, the count written in each non-zero cell
    C >  30   no text in cells; classes reordered so that classes confused with each other sit side by side
              (chained order, below), every k-th class named (about 50 names per axis); the figure grows
              to ~16 in at 120 dpi, about 4.5 px per cell at 400 classes
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
from matplotlib.colors import ListedColormap, PowerNorm

from tdn.reporting.figures import new_figure, save_figure

ANNOTATE_MAX_CLASSES = 30  # above this, no per-cell counts and classes reordered (see module docstring)
AXIS_NAMES = 50  # at most this many class names per axis on a large matrix
CHAIN_MEMORY = 4  # class_order links a class to the last this many placed ones
GAMMA = 0.4  # power norm of the colour scale (module docstring)


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
    cm = np.asarray(cm)
    c = cm.shape[0]
    order = class_order(cm)
    shown = cm[np.ix_(order, order)]
    small = c <= ANNOTATE_MAX_CLASSES
    side = max(5.0, 3.0 + 0.3 * c) if small else min(8.0 + 0.02 * c, 16.0)
    fig = new_figure(width=side + 1.5, height=side)
    ax = fig.add_subplot()
    vmax = max(int(shown.max()), 1)
    # Blues from 25% up, zero cells masked to white: a single confused video is a visible blue, not near-white
    cmap = ListedColormap(colormaps["Blues"](np.linspace(0.25, 1.0, 256))).with_extremes(bad="white")
    im = ax.imshow(
        np.ma.masked_equal(shown, 0), cmap=cmap, norm=PowerNorm(GAMMA, vmin=0, vmax=vmax),
        interpolation="nearest",
    )  # fmt: skip
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    bar.set_label("videos (count; power scale)")
    step = 1 if small else math.ceil(c / AXIS_NAMES)
    ticks = list(range(0, c, step))
    labels = [str(names[order[i]])[:24] for i in ticks]
    fontsize = 7 if small else 5
    ax.set_xticks(ticks, labels=labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, labels=labels, fontsize=fontsize)
    if small:
        for t in range(c):
            for p in range(c):
                if shown[t, p]:
                    dark = (shown[t, p] / vmax) ** GAMMA > 0.6
                    ax.text(
                        p, t, str(int(shown[t, p])), ha="center", va="center", fontsize=6,
                        color="white" if dark else "black",
                    )  # fmt: skip
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
    else:
        ax.set_xlabel(f"predicted class (1 name in {step}; mutually confused classes side by side)")
        ax.set_ylabel("true class (same order)")
    ax.set_title(title[:100], fontsize=9)
    fig.tight_layout()
    return save_figure(fig, dpi=100 if small else 120)
