"""A training run's history as a table and a picture: ``metrics.csv`` and ``curves.png``, one row per epoch.

    training loop (rank 0), after each epoch: records.append(EpochRecord(...))
        -> write_training_history(records, folder)
            ├─ <folder>/metrics.csv   header = EpochRecord field names, one row per epoch ("" = not validated)
            └─ <folder>/curves.png    loss (train, val), top-1 % (train, val), learning rate; x = epoch
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

from tdn.reporting.figures import new_figure, save_figure


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
    """Three panels side by side; validation points only where the epoch was validated."""
    epochs = [r.epoch for r in records]
    val = [r for r in records if r.val_top1_pct is not None]
    fig = new_figure(width=13.0, height=3.8)
    loss_ax, acc_ax, lr_ax = fig.subplots(1, 3)
    loss_ax.plot(epochs, [r.train_loss for r in records], marker="o", label="train")
    val_loss = [r for r in records if r.val_loss is not None and math.isfinite(r.val_loss)]
    if val_loss:
        loss_ax.plot([r.epoch for r in val_loss], [r.val_loss for r in val_loss], marker="s", label="val")
    loss_ax.set_title("loss")
    acc_ax.plot(epochs, [r.train_top1_pct for r in records], marker="o", label="train top-1")
    if val:
        acc_ax.plot([r.epoch for r in val], [r.val_top1_pct for r in val], marker="s", label="val top-1")
        best = max(val, key=lambda r: r.val_top1_pct or 0.0)
        acc_ax.annotate(
            f"best {best.val_top1_pct:.1f}%", (best.epoch, best.val_top1_pct or 0.0),
            textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8,
        )  # fmt: skip
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
            ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, dpi=90)


def _replace_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
