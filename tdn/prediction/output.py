"""Prediction rows -> .csv / .jsonl / .parquet files, and the readable table for a few videos.

One row per video, the same columns in every format:

    video                  the path or URI the video was found at
    label_1 .. label_k     class names, most probable first (the class index when the model names none)
    prob_1 .. prob_k       their probabilities in [0, 1] (mean over the protocol's views of the softmax)
    model, model_version   the model URI and, for a registered model, its version
    protocol, views        e.g. ssv1x1 and 1 (clips x crops scored per video)
    input_size, short_side the sizes the views were cut at
    overrides              flags that overrode the model's recipe ("input_size 64 (recipe 56)"), else ""
    error                  "" or why the video could not be read: "<stage>: <reason>" (stages as the shard
                           job's quarantine: missing, open, probe, decode); its label/prob cells are empty
    features               (--features) the pooled clip embedding: a list of floats (a JSON array in CSV)

``encode(rows, fmt)`` gives a whole file's bytes; ``concat`` joins part files into one (parts: run.py).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

OutputFormat = Literal["csv", "jsonl", "parquet"]


@dataclass(frozen=True)
class PredictionRow:
    video: str
    labels: tuple[str, ...]  # top-k, most probable first; () for an error row
    probs: tuple[float, ...]
    model: str
    model_version: str
    protocol: str
    views: int
    input_size: int
    short_side: int
    overrides: str = ""
    error: str = ""
    features: tuple[float, ...] | None = None


def format_of(path: str) -> OutputFormat:
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in ("csv", "jsonl", "parquet"):
        raise ValueError(f"{path}: output must end in .csv, .jsonl or .parquet")
    return ext  # type: ignore[return-value]


def columns(rows: Sequence[PredictionRow], top_k: int, features: bool) -> dict[str, list[Any]]:
    """The flat columns of the module docstring (every row padded to ``top_k``: empty cells when fewer)."""
    cols: dict[str, list[Any]] = {"video": [r.video for r in rows]}
    for i in range(top_k):
        cols[f"label_{i + 1}"] = [r.labels[i] if i < len(r.labels) else None for r in rows]
        cols[f"prob_{i + 1}"] = [r.probs[i] if i < len(r.probs) else None for r in rows]
    for name in (
        "model",
        "model_version",
        "protocol",
        "views",
        "input_size",
        "short_side",
        "overrides",
        "error",
    ):
        cols[name] = [getattr(r, name) for r in rows]
    if features:
        cols["features"] = [list(r.features) if r.features is not None else None for r in rows]
    return cols


def encode(rows: Sequence[PredictionRow], fmt: OutputFormat, top_k: int, features: bool) -> bytes:
    """A whole file of ``rows`` in ``fmt``."""
    cols = columns(rows, top_k, features)
    names = list(cols)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {n: pa.array(v, type=pa.list_(pa.float32())) if n == "features" else v for n, v in cols.items()}
        )
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()
    records = [{n: cols[n][i] for n in names} for i in range(len(rows))]
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({n: _csv_cell(v) for n, v in r.items()})
    return text.getvalue().encode("utf-8")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return json.dumps([round(float(v), 6) for v in value])
    return value


def concat(parts: Sequence[bytes], fmt: OutputFormat) -> bytes:
    """One file from part files of the same columns (CSV: the first header kept)."""
    if fmt == "jsonl":
        return b"".join(parts)
    if fmt == "csv":
        out = [parts[0]] + [p.split(b"\n", 1)[1] if b"\n" in p else b"" for p in parts[1:]]
        return b"".join(out)
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(io.BytesIO(p)) for p in parts]
    sink = io.BytesIO()
    pq.write_table(pa.concat_tables(tables), sink)
    return sink.getvalue()


def table(rows: Sequence[PredictionRow], top_k: int = 5) -> str:
    """The stdout table: one line per video, its top-k as ``name 97.1%``, or its error."""
    width = min(max([len(r.video) for r in rows] + [5]), 60)
    shown = min(top_k, max([len(r.labels) for r in rows] + [1]))
    lines = [f"{'video':<{width}}  top-{shown} (probability)"]
    for r in rows:
        name = r.video if len(r.video) <= width else "..." + r.video[-(width - 3) :]
        if r.error:
            lines.append(f"{name:<{width}}  error: {r.error}")
        else:
            cells = [f"{label} {100.0 * p:.1f}%" for label, p in zip(r.labels[:top_k], r.probs[:top_k])]
            lines.append(f"{name:<{width}}  " + " | ".join(cells))
    return "\n".join(lines)


def read_rows(data: bytes, fmt: OutputFormat) -> list[dict[str, Any]]:
    """A file's rows as dicts of its columns (CSV cells as text)."""
    if fmt == "jsonl":
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data)).to_pylist()


def error_count(data: bytes, fmt: OutputFormat) -> int:
    """Rows of a file whose ``error`` is not empty."""
    return sum(1 for row in read_rows(data, fmt) if row.get("error"))


def parse_rows(data: bytes, fmt: OutputFormat, top_k: int) -> list[PredictionRow]:
    """A file's rows back as PredictionRows (features left out): the table of a resumed run."""
    rows = []
    for r in read_rows(data, fmt):
        labels = [r.get(f"label_{i + 1}") for i in range(top_k)]
        probs = [r.get(f"prob_{i + 1}") for i in range(top_k)]
        kept = [
            (str(label), float(p))
            for label, p in zip(labels, probs)
            if label not in (None, "") and p is not None
        ]
        rows.append(
            PredictionRow(
                video=str(r["video"]),
                labels=tuple(label for label, _ in kept),
                probs=tuple(p for _, p in kept),
                model=str(r.get("model") or ""),
                model_version=str(r.get("model_version") or ""),
                protocol=str(r.get("protocol") or ""),
                views=int(r.get("views") or 0),
                input_size=int(r.get("input_size") or 0),
                short_side=int(r.get("short_side") or 0),
                overrides=str(r.get("overrides") or ""),
                error=str(r.get("error") or ""),
            )
        )
    return rows
