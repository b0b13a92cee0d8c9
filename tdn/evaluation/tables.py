"""Paper-style benchmark tables built from MLflow evaluation runs (never typed by hand).

    runs tagged tdn.kind=evaluation ─ load_results ─ latest run per (model, dataset, split, protocol, shards)
        (runs logged before issue 15, with metrics top1 / top5 / mean_class_acc, are read as well)
        ├─ accuracy_table(dataset)   Table 2/3 layout: Method, Backbone, Frames, Input, GFLOPs, Top-1, Top-5
        ├─ transfer_table()          Table 4: UCF101 / HMDB51, mean top-1 over the three splits
        └─ timing_table()            Table 5: Frames x Clips x Crops, ms per video (loading included), Top-1
    -> Markdown, CSV and HTML files (write_tables); loading the runs and logging the tables: table_runs.py.

With ``with_paper`` the published rows (tdn/evaluation/paper_results.py) are added, their method marked
"(paper)".
"""

from __future__ import annotations

import csv
import html
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tdn.evaluation.paper_results import TABLE2, TABLE3, TABLE4, TABLE5, PaperRow
from tdn.evaluation.results import EvalResult
from tdn.tracking.mlflow_store import TRANSFER_TAG

TABLES_EXPERIMENT = "tdn-tables"
PAPER = " (paper)"

_METHODS = {"tdn": "TDN", "tsn": "TSN", "tconv": "TConv", "stdm": "S-TDM", "ltdm": "L-TDM"}
_BACKBONES = {
    "resnet18": "ResNet18",
    "resnet34": "ResNet34",
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
}
_DATASET_TITLES = {
    "ssv1": "Something-Something V1",
    "ssv2": "Something-Something V2",
    "kinetics": "Kinetics-400",
    "ucf101": "UCF101",
    "hmdb51": "HMDB51",
}


@dataclass
class Evaluation:
    """One evaluation run as the tables see it."""

    run_id: str
    start_time: int
    result: EvalResult
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Table:
    name: str  # file stem, e.g. "table2_ssv1"
    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        lines += [""] + [f"_{n}_" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(self.columns)
        w.writerows(self.rows)
        return buf.getvalue()

    def to_html(self) -> str:
        esc = html.escape
        head = "".join(f"<th>{esc(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>\n" for row in self.rows)
        notes = "".join(f"<p><em>{esc(n)}</em></p>" for n in self.notes)
        return f"<h3>{esc(self.title)}</h3>\n<table>\n<tr>{head}</tr>\n{body}</table>\n{notes}\n"


def latest_per_setting(evals: Iterable[Evaluation]) -> list[Evaluation]:
    """Keep the newest run for each (model, dataset, split, split number, protocol, shard checksum)."""
    best: dict[tuple, Evaluation] = {}
    for e in evals:
        r = e.result
        key = (
            r.model_id,
            r.dataset,
            r.split,
            r.split_number,
            r.protocol,
            r.index_checksum,
            r.input_size,
            tuple(r.ensemble_of),
        )
        if key not in best or e.start_time > best[key].start_time:
            best[key] = e
    return sorted(best.values(), key=lambda e: (e.result.dataset, e.start_time))


# ----------------------------------------------------------------------------------------------- rows


def method_name(r: EvalResult) -> str:
    return "+".join(_METHODS.get(v, v) for v in r.variant.split("+"))


def backbone_name(arch: str) -> str:
    return _BACKBONES.get(arch, arch)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _gflops(per_view: float | None, views: int) -> str:
    if per_view is None:
        return "-"
    g = f"{per_view:.3g}" if per_view < 10 else f"{per_view:.0f}"
    return g if views <= 1 else f"{g}×{views}"


def _frames(frames: str, clips: int, crops: int) -> str:
    f = f"({frames})" if "+" in frames and (clips > 1 or crops > 1) else frames
    return f if clips * crops <= 1 else f"{f}×{clips}×{crops}"


def _input(r: EvalResult) -> str:
    """The input size (crop side) evaluated at; marked when it is not the one the model was trained for."""
    return f"{r.input_size} (trained {r.trained_input_size})" if r.size_mismatch else str(r.input_size)


def _paper_input(views: int) -> str:
    return "256" if views == 30 else "224"  # Kinetics 10x3 crops of 256; otherwise centre crops of 224


def _model_label(r: EvalResult) -> str:
    if r.ensemble_of:
        return "ensemble of " + ", ".join(x[:8] for x in r.ensemble_of)
    if r.model_name:
        return f"{r.model_name} v{r.model_version}"
    return r.model_id


ACCURACY_COLUMNS = [
    "Method",
    "Backbone",
    "Frames",
    "Input",
    "GFLOPs",
    "Top-1",
    "Top-5",
    "Model",
    "Split",
    "Videos",
]


def accuracy_table(evals: Sequence[Evaluation], dataset: str, with_paper: bool = False) -> Table:
    """Table 2/3 layout for one dataset (all our evaluations on it, then the paper's rows)."""
    rows = []
    for e in evals:
        r = e.result
        if r.dataset != dataset:
            continue
        rows.append(
            [
                method_name(r),
                backbone_name(r.arch),
                _frames(r.frames, r.clips, r.crops),
                _input(r),
                _gflops(r.gflops, r.views),
                _pct(r.top1_pct),
                _pct(r.top5_pct),
                _model_label(r),
                r.split + (f"{r.split_number}" if r.split_number else ""),
                str(r.num_videos),
            ]
        )
    paper: tuple[PaperRow, ...] = TABLE3 if dataset == "kinetics" else TABLE2
    if with_paper:
        for p in paper:
            if p.dataset == dataset:
                clips, crops = (10, 3) if p.views == 30 else (1, 1)
                rows.append(
                    [
                        p.method + PAPER,
                        p.backbone,
                        _frames(p.frames, clips, crops),
                        _paper_input(p.views),
                        _gflops(p.gflops, p.views),
                        _pct(p.top1_pct),
                        _pct(p.top5_pct),
                        "-",
                        "-",
                        "-",
                    ]
                )
    number = "3" if dataset == "kinetics" else "2" if dataset in ("ssv1", "ssv2") else ""
    title = (
        f"Table {number} layout: {_DATASET_TITLES.get(dataset, dataset)}"
        if number
        else (f"Results on {_DATASET_TITLES.get(dataset, dataset)} (Table 2/3 layout)")
    )
    return Table(
        name=f"table{number or '23'}_{dataset}",
        title=title,
        columns=ACCURACY_COLUMNS,
        rows=rows,
        notes=[
            "Top-1/Top-5 in %; Input is the crop side in pixels ('(trained N)': evaluated at a size other "
            "than the model's own); GFLOPs are multiply-adds per view (x views); rows marked (paper) are "
            "quoted from Wang et al., CVPR 2021."
        ],
    )


def transfer_table(evals: Sequence[Evaluation], with_paper: bool = False) -> Table:
    """Table 4: mean top-1 over splits 1-3 of UCF101 and HMDB51, one row per transfer job (or model)."""
    groups: dict[tuple, dict[str, dict[int, float]]] = {}
    meta: dict[tuple, EvalResult] = {}
    for e in evals:
        r = e.result
        if r.dataset not in ("ucf101", "hmdb51") or not r.split_number:
            continue
        key = (e.tags.get(TRANSFER_TAG) or r.model_name or r.model_id, r.arch, r.variant, r.frames)
        groups.setdefault(key, {}).setdefault(r.dataset, {})[r.split_number] = r.top1_pct
        meta.setdefault(key, r)

    def cell(by_split: dict[int, float] | None) -> str:
        if not by_split:
            return "-"
        mean = sum(by_split.values()) / len(by_split)
        return f"{mean:.1f}%" if len(by_split) == 3 else f"{mean:.1f}% ({len(by_split)}/3 splits)"

    rows = []
    for key, by_ds in groups.items():
        r = meta[key]
        rows.append(
            [
                method_name(r),
                r.pretrain or "-",
                backbone_name(r.arch),
                r.frames,
                cell(by_ds.get("ucf101")),
                cell(by_ds.get("hmdb51")),
                " ".join(
                    f"{ds}:{s}={v:.1f}"
                    for ds in ("ucf101", "hmdb51")
                    for s, v in sorted(by_ds.get(ds, {}).items())
                ),
            ]
        )
    if with_paper:
        for method in dict.fromkeys(p.method for p in TABLE4):
            pr = {p.dataset: p for p in TABLE4 if p.method == method}
            first = next(iter(pr.values()))
            rows.append(
                [
                    method + PAPER,
                    first.pretrain,
                    first.backbone,
                    first.frames or "-",
                    *(f"{pr[d].top1_pct:.1f}%" if d in pr else "-" for d in ("ucf101", "hmdb51")),
                    "-",
                ]
            )
    return Table(
        name="table4_transfer",
        title="Table 4 layout: UCF101 and HMDB51 (mean top-1 over the 3 official splits)",
        columns=["Method", "Pretrain", "Backbone", "Frames", "UCF101", "HMDB51", "Per split"],
        rows=rows,
        notes=["Rows marked (paper) are quoted from Wang et al., CVPR 2021, appendix A."],
    )


def timing_table(evals: Sequence[Evaluation], with_paper: bool = False) -> Table:
    """Table 5: wall time per video of the whole evaluation (loading and inference), with its accuracy."""
    rows = []
    for e in evals:
        r = e.result
        if r.ensemble_of:
            continue  # ensembles reuse stored scores: their time is not an inference time
        rows.append(
            [
                method_name(r),
                backbone_name(r.arch),
                f"{r.frames}×{r.clips}×{r.crops}",
                _input(r),
                f"{r.ms_per_video:.1f}",
                f"{r.videos_per_s:.1f}",
                _pct(r.top1_pct),
                _DATASET_TITLES.get(r.dataset, r.dataset),
                f"{r.device} x{r.replicas}",
            ]
        )
    if with_paper:
        for p in TABLE5:
            rows.append(
                [
                    p.method + PAPER,
                    p.backbone,
                    p.views_label,
                    _paper_input(p.views),
                    f"{p.ms_per_video:.1f}",
                    "-",
                    _pct(p.top1_pct),
                    _DATASET_TITLES[p.dataset],
                    "Tesla V100, batch 16",
                ]
            )
    return Table(
        name="table5_timing",
        title="Table 5 layout: running time per video (whole evaluation incl. data loading)",
        columns=[
            "Method",
            "Backbone",
            "Frames×Clips×Crops",
            "Input",
            "Time (ms/video)",
            "Videos/s",
            "Top-1 (%)",
            "Dataset",
            "Device",
        ],
        rows=rows,
        notes=["Our times depend on the machine in the Device column; the paper's were measured on a V100."],
    )


def build_tables(evals: Sequence[Evaluation], with_paper: bool = False) -> list[Table]:
    latest = latest_per_setting(evals)
    # UCF101/HMDB51 runs of an official split belong to Table 4; others (e.g. the quickstart) get their own table.
    datasets = sorted(
        {
            e.result.dataset
            for e in latest
            if e.result.dataset not in ("ucf101", "hmdb51") or not e.result.split_number
        }
    )
    if with_paper:
        datasets = sorted(set(datasets) | {"ssv1", "ssv2", "kinetics"})
    tables = [accuracy_table(latest, d, with_paper) for d in datasets]
    tables.append(transfer_table(latest, with_paper))
    tables.append(timing_table(latest, with_paper))
    return tables


def write_tables(tables: Sequence[Table], out_dir: str | os.PathLike) -> list[Path]:
    """<name>.md/.csv/.html per table plus tables.md and tables.html holding all of them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for t in tables:
        for ext, text in (("md", t.to_markdown()), ("csv", t.to_csv()), ("html", t.to_html())):
            path = out / f"{t.name}.{ext}"
            path.write_text(text, encoding="utf-8")
            files.append(path)
    (out / "tables.md").write_text("\n".join(t.to_markdown() for t in tables), encoding="utf-8")
    page = "<!doctype html><meta charset='utf-8'><title>TDN results</title>\n" + "".join(
        t.to_html() for t in tables
    )
    (out / "tables.html").write_text(page, encoding="utf-8")
    return files + [out / "tables.md", out / "tables.html"]
