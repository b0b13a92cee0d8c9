"""Pictures and the HTML report, without Ray: training curves, a 400-class confusion, per-class bars, report.html.

Everything here is drawn for real with matplotlib (Agg) and read back: PNG headers and sizes, CSVs parsed,
the HTML searched for what it must and must not contain.
"""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import numpy as np

from tdn.reporting.confusion import ANNOTATE_MAX_CLASSES, class_order, most_confused
from tdn.reporting.figures import png_size
from tdn.reporting.html_report import REPORT_FILES, ReportSummary, write_evaluation_report
from tdn.reporting.per_class import SHOWN, class_accuracies, per_class_png
from tdn.reporting.training_curves import EpochRecord, read_training_history, write_training_history


def _records() -> list[EpochRecord]:
    """Five epochs, validated every second one (the others have no val numbers)."""
    return [
        EpochRecord(
            epoch=e,
            step=12 * e,
            train_loss=3.0 / e,
            train_top1_pct=15.0 * e,
            lr=0.01 / e,
            epoch_time_s=4.25,
            samples_per_s=96.5,
            val_loss=2.5 / e if e % 2 == 0 else None,
            val_top1_pct=11.0 * e if e % 2 == 0 else None,
            val_top5_pct=min(100.0, 30.0 * e) if e % 2 == 0 else None,
        )  # fmt: skip
        for e in range(1, 6)
    ]


def test_training_history_csv_reads_back_and_curves_are_a_png(tmp_path: Path) -> None:
    records = _records()
    paths = write_training_history(records, str(tmp_path / "history"))
    assert [Path(p).name for p in paths] == ["metrics.csv", "curves.png"]
    with open(paths[0], newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "step", "train_loss", "train_top1_pct", "lr", "epoch_time_s",
                             "samples_per_s", "val_loss", "val_top1_pct", "val_top5_pct"]  # fmt: skip
    assert len(rows) == 5 and rows[0]["val_top1_pct"] == "" and float(rows[3]["val_top1_pct"]) == 44.0
    assert read_training_history(paths[0]) == records
    width, height = png_size(Path(paths[1]).read_bytes())
    assert 600 <= width <= 2000 and 200 <= height <= 1000
    # NumPy scalars (what a loop often holds) are written as plain numbers, not "np.float64(...)"
    numpy_record = EpochRecord(np.int64(1), np.int64(3), np.float64(0.5), np.float32(12.5), 0.1, 1.0, 2.0,
                               None, None, None)  # fmt: skip
    write_training_history([numpy_record], str(tmp_path / "np"))
    assert "np." not in (tmp_path / "np" / "metrics.csv").read_text()
    assert read_training_history(tmp_path / "np" / "metrics.csv")[0].train_top1_pct == 12.5


def _confusion(classes: int, seed: int = 0) -> np.ndarray:
    """50 videos per class, 80 % right, the rest spread; plus one strong pair 17 -> 42 (30 videos)."""
    rng = np.random.default_rng(seed)
    cm = np.zeros((classes, classes), dtype=np.int64)
    for t in range(classes):
        preds = np.where(rng.random(50) < 0.8, t, rng.integers(0, classes, 50))
        np.add.at(cm[t], preds, 1)
    cm[17, 42] += 30
    return cm


def _summary(**over: object) -> ReportSummary:
    fields: dict = dict(
        title="models:/tdn/3 on kinetics/val", model_id="models:/tdn/3", dataset="kinetics", split="val",
        frames="8", clips=10, crops=3, input_size=256, short_side=256, index_checksum="sha256:abc123",
        num_videos=20000, top1_pct=76.25, top5_pct=92.5, mean_class_top1_pct=75.125, ms_per_video=12.5,
        videos_per_s=80.0, gflops_per_view=36.4,
    )  # fmt: skip
    fields.update(over)
    return ReportSummary(**fields)


def test_400_class_confusion_report_is_fast_legible_and_lists_the_top_pair(tmp_path: Path) -> None:
    cm = _confusion(400)
    names = [f"class_{i:03d}" for i in range(400)]
    start = time.process_time()  # CPU time: the test machine's cores are shared
    paths = write_evaluation_report(tmp_path, cm, names, _summary())
    elapsed = time.process_time() - start
    assert [p.name for p in paths] == list(REPORT_FILES)
    assert elapsed < 15.0, f"report at 400 classes took {elapsed:.1f} s of CPU"  # ~4 s measured

    png = (tmp_path / "confusion.png").read_bytes()
    width, height = png_size(png)
    # >= 3 px per class on both axes, but not a poster: the old figure was 1600 px for any count over 64
    assert 1200 <= width <= 2600 and 1200 <= height <= 2600
    assert len(png) < 2_000_000

    with open(tmp_path / "most_confused.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["true_class"] == "class_017" and rows[0]["predicted_class"] == "class_042"
    assert int(rows[0]["count"]) >= 30
    share = 100.0 * int(rows[0]["count"]) / int(cm[17].sum())
    assert float(rows[0]["share_of_true_class_pct"]) == round(share, 2)
    assert len(rows) == 20 and all(r["true_index"] != r["predicted_index"] for r in rows)

    # per-class chart at 400 classes: two panels of SHOWN bars, not 400 bars
    chart_w, chart_h = png_size((tmp_path / "per_class.png").read_bytes())
    assert chart_h < 100 * (1.3 + 0.24 * SHOWN) and chart_w > chart_h


def test_large_confusions_put_confused_classes_side_by_side() -> None:
    cm = _confusion(60, seed=1)
    cm[5, 55] += 40
    cm[55, 5] += 40
    order = class_order(cm).tolist()
    assert sorted(order) == list(range(60))
    assert abs(order.index(5) - order.index(55)) == 1
    assert class_order(cm[:ANNOTATE_MAX_CLASSES, :ANNOTATE_MAX_CLASSES]).tolist() == list(range(30))


def test_most_confused_ranks_by_count_and_skips_the_diagonal() -> None:
    cm = np.array([[9, 1, 0], [4, 6, 0], [0, 2, 8]])
    pairs = most_confused(cm, ["a", "b", "c"], top=5)
    assert [(p.true_name, p.predicted_name, p.count) for p in pairs] == [("b", "a", 4), ("c", "b", 2),
                                                                          ("a", "b", 1)]  # fmt: skip
    assert pairs[0].share_pct == 40.0


def test_html_report_is_self_contained_and_escapes_names(tmp_path: Path) -> None:
    names = ['<b>&"x"', "walk", "run"]
    cm = np.array([[3, 2, 0], [1, 4, 0], [0, 0, 0]])  # "run" has no videos
    write_evaluation_report(tmp_path, cm, names, _summary(model_id="<script>m</script>", frames="8+16"))
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "76.25" in page and "92.50" in page and "75.12" in page  # headline metrics, percent
    assert "8+16 &times; 10 &times; 3" in page and "sha256:abc123" in page and "256" in page
    assert "&lt;b&gt;&amp;&quot;x&quot;" in page and '<b>&"x"' not in page
    assert "&lt;script&gt;m&lt;/script&gt;" in page and "<script" not in page
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) == 2 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r"https?://", page)
    # the most-confused pair and the per-class table (worst first; "run" without videos last)
    assert re.search(r"<td>&lt;b&gt;&amp;&quot;x&quot;</td><td>walk</td><td class=\"num\">2</td>", page)
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td><td>([^<]*)</td>", page)
    assert [name for _, name in rows] == ["&lt;b&gt;&amp;&quot;x&quot;", "walk", "run"]


def test_per_class_chart_shows_every_class_when_few() -> None:
    names = [f"c{i}" for i in range(10)]
    cm = np.diag(np.arange(1, 11))
    cm[0, 1] = 5
    classes = class_accuracies(cm, names)
    assert classes[0].top1_pct == 100.0 / 6.0 and classes[1].top1_pct == 100.0
    few = png_size(per_class_png(classes))
    many = png_size(per_class_png(class_accuracies(_confusion(60), [str(i) for i in range(60)])))
    assert few[1] < many[1] and many[0] > few[0]  # two panels of SHOWN bars beat one panel of 10
