"""One self-contained HTML page per evaluation: report.html, readable offline and inside MLflow's artifact view.

    write_evaluation_report(folder, cm, names, summary) writes the pictures and the page beside the results:
        confusion.png       counts, legible up to 400 classes (tdn/reporting/confusion.py)
        per_class.png       top-1 per class, sorted (tdn/reporting/per_class.py)
        most_confused.csv   the MOST_CONFUSED largest off-diagonal cells
        report.html         the page below, with both pictures inside

    render_report(summary, classes, pairs, figures) -> HTML text
        1. protocol      model id, dataset/split, frames x clips x crops, input size, short side, index checksum
        2. headline      top-1 / top-5 / mean class top-1 (percent), ms per video, videos/s, GFLOPs per view
        3. confusions    the most-confused pairs (true -> predicted, count, share of the true class), then
                         Grad-CAM strips of a few of their videos (when the evaluation made them)
        4. pictures      each figure inline as a data:image/png;base64 URI
        5. per class     every class, worst first: videos, correct, top-1 %

Self-contained: no external URL, no script, styles inline in one <style> block. Every text that comes from
data (class names, model id, dataset names) goes through ``html.escape``.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tdn.reporting.confusion import ConfusedPair, confusion_png, most_confused, most_confused_csv
from tdn.reporting.per_class import ClassAccuracy, by_accuracy, class_accuracies, per_class_png

MOST_CONFUSED = 20  # pairs listed in most_confused.csv and the report
REPORT_FILES = ("confusion.png", "per_class.png", "most_confused.csv", "report.html")


@dataclass(frozen=True)
class ReportSummary:
    """The evaluation's protocol and headline numbers. Accuracies are percentages."""

    title: str  # page title, e.g. "models:/tdn/3 on kinetics/val"
    model_id: str  # what was evaluated (models:/name/version, checkpoint URI, ...)
    dataset: str
    split: str
    frames: str  # segments per clip ("8+16" for an ensemble)
    clips: int
    crops: int
    input_size: int  # crop side fed to the network, pixels
    short_side: int  # frames resized to this short side before cropping, pixels
    index_checksum: str  # checksum of the shard index evaluated
    num_videos: int
    top1_pct: float
    top5_pct: float
    mean_class_top1_pct: float
    ms_per_video: float  # wall time per video, loading included
    videos_per_s: float
    gflops_per_view: float


@dataclass(frozen=True)
class ReportFigure:
    """A picture shown in the report."""

    caption: str
    png: bytes  # PNG file bytes (embedded as a data: URI)


def write_evaluation_report(
    folder: str | os.PathLike,
    cm: np.ndarray,
    names: Sequence[str],
    summary: ReportSummary,
    cams: Sequence[ReportFigure] = (),
) -> list[Path]:
    """Write REPORT_FILES into ``folder`` from the (C, C) confusion counts (rows = true class); their paths.
    ``cams``: Grad-CAM strips of videos of the most-confused pairs (tdn/evaluation/confusion_cams.py), shown
    after the pairs."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    classes = class_accuracies(cm, names)
    pairs = most_confused(cm, names, MOST_CONFUSED)
    figures = [
        ReportFigure(f"Confusion matrix (counts), {summary.title}", confusion_png(cm, names, summary.title)),
        ReportFigure("Top-1 per class", per_class_png(classes, summary.title)),
    ]
    contents = {
        "confusion.png": figures[0].png,
        "per_class.png": figures[1].png,
        "most_confused.csv": most_confused_csv(pairs).encode("utf-8"),
        "report.html": render_report(summary, classes, pairs, figures, cams).encode("utf-8"),
    }
    paths = []
    for name in REPORT_FILES:
        tmp = out / f".{name}.tmp"
        tmp.write_bytes(contents[name])
        os.replace(tmp, out / name)
        paths.append(out / name)
    return paths


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.headline td { font-size: 1.3em; font-weight: 600; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #eee; }
"""


def render_report(
    summary: ReportSummary,
    classes: Sequence[ClassAccuracy],
    pairs: Sequence[ConfusedPair],
    figures: Sequence[ReportFigure],
    cams: Sequence[ReportFigure] = (),
) -> str:
    """The whole page as one string (see the module docstring for its sections)."""
    s = summary
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(s.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Evaluation: {_e(s.title)}</h1>",
        "<h2>Protocol</h2>",
        _table(
            [
                "model",
                "dataset / split",
                "frames &times; clips &times; crops",
                "input size",
                "short side",
                "videos",
                "index checksum",
            ],
            [
                [
                    _e(s.model_id),
                    f"{_e(s.dataset)} / {_e(s.split)}",
                    f"{_e(s.frames)} &times; {s.clips} &times; {s.crops}",
                    f"{s.input_size}",
                    f"{s.short_side}",
                    f"{s.num_videos}",
                    f"<code>{_e(s.index_checksum)}</code>",
                ]
            ],
        ),
        "<h2>Results</h2>",
        _table(
            ["top-1 (%)", "top-5 (%)", "mean class top-1 (%)", "ms / video", "videos / s", "GFLOPs / view"],
            [
                [
                    f"{s.top1_pct:.2f}",
                    f"{s.top5_pct:.2f}",
                    f"{s.mean_class_top1_pct:.2f}",
                    f"{s.ms_per_video:.1f}",
                    f"{s.videos_per_s:.2f}",
                    format_gflops(s.gflops_per_view),
                ]
            ],
            numeric=True,
            css="headline",
        ),
    ]
    parts.append(f"<h2>Most-confused pairs (top {len(pairs)})</h2>")
    if pairs:
        parts.append(
            _table(
                ["true class", "predicted as", "videos", "share of the true class (%)"],
                [[_e(q.true_name), _e(q.predicted_name), f"{q.count}", f"{q.share_pct:.1f}"] for q in pairs],
                numeric=True,
            )
        )
    else:
        parts.append("<p>No video was predicted as another class.</p>")
    if cams:
        parts.append("<h2>Where the model looked: Grad-CAM of videos of the most-confused pairs</h2>")
        parts.append(
            "<p>Each strip: the clip's centre frames as the model saw them, the class-activation map of the "
            "predicted class over each (blue low, red high; the last conv stage, Grad-CAM).</p>"
        )
    for fig in [*cams, *figures]:
        data = base64.b64encode(fig.png).decode("ascii")
        parts.append(
            f'<figure><img alt="{_e(fig.caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(fig.caption)}</figcaption></figure>"
        )
    ranked = by_accuracy(classes)
    unscored = [c for c in classes if c.top1_pct is None]
    parts.append(f"<h2>Per class ({len(classes)} classes, worst first)</h2>")
    parts.append(
        _table(
            ["#", "class", "videos", "correct", "top-1 (%)"],
            [
                [
                    f"{c.index}",
                    _e(c.name),
                    f"{c.videos}",
                    f"{c.correct}",
                    "&ndash;" if c.top1_pct is None else f"{c.top1_pct:.1f}",
                ]
                for c in [*ranked, *unscored]
            ],
            numeric=True,
        )
    )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def format_gflops(gflops: float) -> str:
    """GFLOPs with 3 significant digits below 10 (0.0475 for the tests' tiny model, not "0.0"), whole above
    (36, 198): the rule of the benchmark tables (tdn/evaluation/tables.py), so the page and they agree."""
    return f"{gflops:.3g}" if abs(gflops) < 10 else f"{gflops:.0f}"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: bool = False, css: str = "") -> str:
    """An HTML table; cells are already-escaped HTML. With ``numeric``, cells that parse as numbers align right."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{c}</td>' if numeric and _is_number(c) else f"<td>{c}</td>" for c in row
        )
        body.append(f"<tr>{cells}</tr>")
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
