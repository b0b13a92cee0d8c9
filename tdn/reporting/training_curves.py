"""A training run's history as a table and a picture: ``metrics.csv`` and ``curves.png``, one row per epoch.

    training loop (rank 0), after each epoch: records.append(EpochRecord(...))
        -> write_training_history(records, folder)
            ├─ <folder>/metrics.csv   header = EpochRecord field names, one row per epoch ("" = not validated)
            └─ <folder>/curves.png    loss (train, val), top-1 % (train, val), learning rate; x = epoch
                                      (curves_figure: a loss spike is clipped and marked, not drawn to scale)
        -> the loop logs both files to the training run

Both files are rewritten whole each time (through a temporary file and ``os.replace``), so a reader never sees a
half-written one and a resumed run that passes the full history gets the full picture.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from tdn.reporting.figures import fit_to_contents, new_figure, save_figure

PANEL_IN = 4.0  # width of each panel's plot area (its height: 3 in)
DPI = 90
SPIKE_FACTOR = 4.0  # a loss point this many times the median of the points before it is a spike (is_spike)
SPIKE_WINDOW = 3  # ... of the SPIKE_WINDOW points before it


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of a training run. Accuracies are percentages in [0, 100]."""

    epoch: int  # 1-based epoch number (the x-axis of curves.png)
    step: int  # global optimiser step at the end of the epoch (the x-axis of the MLflow curves)
    train_loss: float  # mean training loss over the epoch
    train_top1_pct: float  # training top-1 over the epoch, percent
    lr: float  # learning rate at the end of the epoch
    epoch_time_s: float  # wall time of the epoch, seconds
    samples_per_s: float  # training samples per second over the epoch (all workers)
    val_loss: float | None  # validation loss; None when this epoch was not validated
    val_top1_pct: float | None  # validation top-1, percent; None when not validated
    val_top5_pct: float | None  # validation top-5, percent; None when not validated


FIELDS = tuple(f.name for f in dataclasses.fields(EpochRecord))


def write_training_history(records: Sequence[EpochRecord], folder: str | os.PathLike) -> list[str]:
    """Write ``metrics.csv`` and ``curves.png`` into ``folder`` (created); returns their two paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "metrics.csv"
    png_path = out / "curves.png"
    _replace_bytes(csv_path, _csv_text(records).encode("utf-8"))
    _replace_bytes(png_path, _curves_png(records))
    return [str(csv_path), str(png_path)]


def read_training_history(path: str | os.PathLike) -> list[EpochRecord]:
    """Read a ``metrics.csv`` written by :func:`write_training_history` back into records."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    records = []
    for row in rows:
        missing = set(FIELDS) - set(row)
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        records.append(
            EpochRecord(
                epoch=int(row["epoch"]),
                step=int(row["step"]),
                train_loss=float(row["train_loss"]),
                train_top1_pct=float(row["train_top1_pct"]),
                lr=float(row["lr"]),
                epoch_time_s=float(row["epoch_time_s"]),
                samples_per_s=float(row["samples_per_s"]),
                val_loss=_optional(row["val_loss"]),
                val_top1_pct=_optional(row["val_top1_pct"]),
                val_top5_pct=_optional(row["val_top5_pct"]),
            )
        )
    return records


def _optional(text: str) -> float | None:
    return None if text == "" else float(text)


def _csv_text(records: Sequence[EpochRecord]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(FIELDS)
    for r in records:
        writer.writerow([_cell(v) for v in dataclasses.astuple(r)])
    return buf.getvalue()


def _cell(value: object) -> str:
    """ "" for None; ints as ints; floats by repr of a plain float (a NumPy scalar's repr is 'np.float64(..)')."""
    if value is None:
        return ""
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return repr(float(value))  # type: ignore[arg-type]


def _curves_png(records: Sequence[EpochRecord]) -> bytes:
    return save_figure(curves_figure(records), dpi=DPI)


def curves_figure(records: Sequence[EpochRecord]) -> Figure:
    """Three panels side by side (PANEL_IN each); validation points only where the epoch was validated.

    Loss: y range from the points that are not spikes (``is_spike``); a spike is drawn as a triangle on
    the top edge with its value beside it, and the axis label says how many were clipped. Top-1: the best
    validation epoch is a star, its value in the legend (no text inside the plot to cover a line). Legends
    sit under their panel, never on a curve.
    """
    epochs = [r.epoch for r in records]
    val = [(r.epoch, r.val_top1_pct) for r in records if r.val_top1_pct is not None]
    fig = new_figure(width=3 * PANEL_IN + 4.0, height=PANEL_IN * 0.75 + 2.5)
    fig.set_dpi(DPI)
    w, h = fig.get_size_inches()
    loss_ax, acc_ax, lr_ax = (
        fig.add_axes(((1.0 + i * (PANEL_IN + 1.2)) / w, 1.5 / h, PANEL_IN / w, PANEL_IN * 0.75 / h))
        for i in range(3)
    )
    train_loss = [(r.epoch, r.train_loss) for r in records if math.isfinite(r.train_loss)]
    val_loss = [
        (r.epoch, r.val_loss) for r in records if r.val_loss is not None and math.isfinite(r.val_loss)
    ]
    loss_ax.plot(*_xy(train_loss), marker="o", label="train")
    if val_loss:
        loss_ax.plot(*_xy(val_loss), marker="s", label="val")
    loss_ax.set_title("loss")
    _clip_spikes(loss_ax, [train_loss, val_loss], "loss")
    acc_ax.plot(epochs, [r.train_top1_pct for r in records], marker="o", label="train top-1")
    if val:
        acc_ax.plot(*_xy(val), marker="s", label="val top-1")
        best_epoch, best_pct = max(val, key=lambda p: p[1])  # the first epoch of the best value
        acc_ax.plot(
            [best_epoch],
            [best_pct],
            linestyle="none",
            marker="*",
            markersize=14,
            color="tab:red",
            label=f"best val {best_pct:.1f}% (epoch {best_epoch})",
        )
    acc_ax.set_title("top-1 (%)")
    acc_ax.set_ylim(0, 100)
    lr_ax.plot(epochs, [r.lr for r in records], marker="o", color="tab:green")
    lr_ax.set_title("learning rate")
    for ax in (loss_ax, acc_ax, lr_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if epochs:
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    for ax in (loss_ax, acc_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fit_to_contents(fig)
    return fig


def is_spike(series: Sequence[float]) -> list[bool]:
    """Per point of one curve: is it a spike, above SPIKE_FACTOR x the median of the SPIKE_WINDOW points
    before it? The first point never is (a loss starts high).

    Why the recent median and not a spread over the whole curve: a loss that converges fast has a long flat
    tail, and any quartile fence (q75 + 6 IQR was tried) then cut off its first epochs, the healthy start of
    the curve (4.9 at epoch 1, flat at 0.3 from epoch 10 on). Against the recent median a falling curve has
    no spike, a one- or two-epoch jump (a diverging step, a broken validation) is one, and a lasting change of
    level stops being one after SPIKE_WINDOW // 2 + 1 epochs: it is then the curve itself."""
    flags = [False] * len(series)
    for i in range(1, len(series)):
        recent = float(np.median(series[max(0, i - SPIKE_WINDOW) : i]))
        flags[i] = series[i] > SPIKE_FACTOR * recent and series[i] > 0
    return flags


def _clip_spikes(ax: Axes, series: Sequence[Sequence[tuple[int, float]]], what: str) -> None:
    """Set the y range from the points that are no spike (``is_spike``, per curve); the points above it
    become triangles on the top edge labelled with their value, and the y label says so."""
    kept = [y for s in series for (_, y), spike in zip(s, is_spike([y for _, y in s])) if not spike]
    if not kept:
        return
    low, high = min(kept), max(kept)
    margin = 0.08 * (high - low) if high > low else 0.1 * max(abs(high), 1.0)
    top = high + margin
    ax.set_ylim(low - margin, top)
    above = [(x, y) for s in series for x, y in s if y > top]
    if not above:
        ax.set_ylabel(what)
        return
    for x, y in above:
        ax.plot([x], [top], marker="^", markersize=9, color="tab:red", clip_on=False, linestyle="none")
        ax.annotate(
            f"{y:.3g}",
            (x, top),
            textcoords="offset points",
            xytext=(6, -4),
            ha="left",
            va="top",
            fontsize=8,
            color="tab:red",
        )
    ax.set_title(ax.get_title(), pad=14)  # room for the triangles above the top edge
    n = len(above)
    ax.set_ylabel(f"{what} (y clipped: {n} spike{'s' if n > 1 else ''} above, \u25b2 = value)")


def _xy(points: Sequence[tuple[int, float]]) -> tuple[list[int], list[float]]:
    return [x for x, _ in points], [y for _, y in points]


def _replace_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
