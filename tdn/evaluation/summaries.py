"""The end-of-job summaries of the evaluation jobs (pipeline/summary.py prints them; --json prints ``data``).

    evaluation_summary(job, result, out_dir, run_id, tracking_uri)   evaluate, ensemble
    reevaluate_summary(report, tracking_uri)                         one pass of reevaluate
    transfer_summary(report, results_file, tracking_uri)             transfer
    tables_summary(tables, out_dir, run_id, tracking_uri)            tables

Headlines carry the key numbers (accuracies in percent, as everywhere); items say where the outputs are and
where the MLflow run is (tdn/tracking/links.py).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

from pipeline.summary import INCOMPLETE, Item, Summary, files_in, pct
from tdn.evaluation.results import EvalResult, json_row
from tdn.tracking.links import model_link, run_link, ui_items

# what an evaluation's output folder holds, most useful first (tdn/evaluation/results.py writes them)
EVAL_FILES = [
    "report.html",
    "results.json",
    "predictions.csv",
    "confusion.png",
    "per_class.csv",
    "per_video_scores.npz",
]


def evaluated(result: EvalResult) -> str:
    """``models:/tdn-k400/3`` for a registered version, else the checkpoint's or official file's id."""
    if result.model_name:
        return f"models:/{result.model_name}/{result.model_version}"
    return result.model_id


def known(value: float | None) -> float | None:
    """An accuracy, None when there is none: an unlabelled split's EvalResult holds NaN (results.json null)."""
    return None if value is None or math.isnan(value) else value


def scores(result: EvalResult) -> str:
    return (
        f"top-1 {pct(known(result.top1_pct))}, top-5 {pct(known(result.top5_pct))}, mean class top-1 "
        f"{pct(known(result.mean_class_top1_pct))} on {result.dataset}/{result.split}"
    )


def evaluation_summary(
    job: str, result: EvalResult, out_dir: str, run_id: str, tracking_uri: str | None
) -> Summary:
    views = f"{result.clips} clip(s) x {result.crops} crop(s) at {result.input_size} px"
    headline = (
        f"{evaluated(result)}: {scores(result)} ({result.num_videos} videos, {views}, "
        f"{result.ms_per_video:.0f} ms/video)"
    )
    items = [Item("results", files_in(out_dir, EVAL_FILES))]
    if result.model_name and tracking_uri:
        items.append(Item("model", model_link(tracking_uri, result.model_name, result.model_version)))
    if run_id and tracking_uri:
        items += [Item("MLflow run", run_link(tracking_uri, run_id)), *ui_items(tracking_uri)]
    elif not run_id:
        reason = (
            "an unlabelled split has no accuracy to record"
            if known(result.top1_pct) is None
            else "--tracking-uri none"
        )
        items.append(Item("MLflow run", f"none ({reason})"))
    data = {**json_row(result.to_dict()), "run_id": run_id, "out": out_dir}  # NaN -> null, as results.json
    return Summary(job, headline, tuple(items), data)


def reevaluate_summary(report: Any, tracking_uri: str) -> Summary:
    """One pass of tdn.evaluation.reevaluate (a ReevaluateReport)."""
    headline = (
        f"{len(report.candidates)} version(s) on the shards {report.index_checksum[:12]}: "
        f"{len(report.evaluated)} evaluated, {len(report.skipped)} already done, {len(report.failed)} failed"
    )
    items = [Item(uri, run_link(tracking_uri, run_id)) for uri, run_id in report.evaluated.items()]
    items += [Item(uri, f"failed: {error}") for uri, error in report.failed.items()]
    if report.tables_run_id:
        items.append(Item("tables run", run_link(tracking_uri, report.tables_run_id)))
    if report.evaluated:
        items += ui_items(tracking_uri)
    status = INCOMPLETE if report.failed else "done"
    return Summary("reevaluate", headline, tuple(items), dataclasses.asdict(report), status)


def transfer_summary(report: Any, results_file: str, tracking_uri: str) -> Summary:
    """A TransferReport: the mean top-1 per dataset, one line per split."""
    means = ", ".join(f"{name} mean top-1 {pct(value)}" for name, value in report.mean_top1_pct.items())
    splits = [
        Item(
            f"{s.dataset} split {s.split}", f"top-1 {pct(s.top1_pct)} ({s.num_videos} videos), {s.checkpoint}"
        )
        for s in report.splits
    ]
    items = [
        *splits,
        Item("results", results_file),
        Item("MLflow run", run_link(tracking_uri, report.parent_run_id)),
        *ui_items(tracking_uri),
    ]
    return Summary("transfer", means, tuple(items), dataclasses.asdict(report))


def tables_summary(tables: Sequence[Any], out_dir: str, run_id: str, tracking_uri: str) -> Summary:
    """The tables written (tdn.evaluation.tables.Table) and their run."""
    filled = [t for t in tables if t.rows]
    rows = sum(len(t.rows) for t in tables)
    headline = f"{len(filled)} of {len(tables)} tables have rows ({rows} rows from the evaluation runs)"
    files = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
    shown = [f for f in ("tables.md", "tables.html") if f in files] + [
        f for f in files if not f.startswith("tables.")
    ]
    items = [Item("tables", files_in(out_dir, shown))]
    items.append(Item("MLflow run", run_link(tracking_uri, run_id) if run_id else "none (--no-log)"))
    items += ui_items(tracking_uri) if run_id else []
    data = {"out": out_dir, "tables": [t.name for t in tables], "rows": rows, "run_id": run_id}
    return Summary("tables", headline, tuple(items), data)
