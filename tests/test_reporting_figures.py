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
import pytest

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
        )
        for e in range(1, 6)
    ]


def test_training_history_csv_reads_back_and_curves_are_a_png(tmp_path: Path) -> None:
    records = _records()
    paths = write_training_history(records, str(tmp_path / "history"))
    assert [Path(p).name for p in paths] == ["metrics.csv", "curves.png"]
    with open(paths[0], newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "epoch",
        "step",
        "train_loss",
        "train_top1_pct",
        "lr",
        "epoch_time_s",
        "samples_per_s",
        "val_loss",
        "val_top1_pct",
        "val_top5_pct",
    ]
    assert len(rows) == 5 and rows[0]["val_top1_pct"] == "" and float(rows[3]["val_top1_pct"]) == 44.0
    assert read_training_history(paths[0]) == records
    width, height = png_size(Path(paths[1]).read_bytes())
    assert 600 <= width <= 2000 and 200 <= height <= 1000
    # NumPy scalars (what a loop often holds) are written as plain numbers, not "np.float64(...)"
    numpy_record = EpochRecord(
        np.int64(1), np.int64(3), np.float64(0.5), np.float32(12.5), 0.1, 1.0, 2.0, None, None, None
    )
    write_training_history([numpy_record], str(tmp_path / "np"))
    assert "np." not in (tmp_path / "np" / "metrics.csv").read_text()
    assert read_training_history(tmp_path / "np" / "metrics.csv")[0].train_top1_pct == 12.5


def _confusion(classes: int, seed: int = 0) -> np.ndarray:
    """50 videos per class, 80 % right, the rest spread; plus one strong pair 17 -> 42 (30 videos) when there
    are that many classes."""
    rng = np.random.default_rng(seed)
    cm = np.zeros((classes, classes), dtype=np.int64)
    for t in range(classes):
        preds = np.where(rng.random(50) < 0.8, t, rng.integers(0, classes, 50))
        np.add.at(cm[t], preds, 1)
    if classes > 42:
        cm[17, 42] += 30
    return cm


def _summary(**over: object) -> ReportSummary:
    fields: dict = dict(
        title="models:/tdn/3 on kinetics/val",
        model_id="models:/tdn/3",
        dataset="kinetics",
        split="val",
        frames="8",
        clips=10,
        crops=3,
        input_size=256,
        short_side=256,
        index_checksum="sha256:abc123",
        num_videos=20000,
        top1_pct=76.25,
        top5_pct=92.5,
        mean_class_top1_pct=75.125,
        ms_per_video=12.5,
        videos_per_s=80.0,
        gflops_per_view=36.4,
    )
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
    assert [(p.true_name, p.predicted_name, p.count) for p in pairs] == [
        ("b", "a", 4),
        ("c", "b", 2),
        ("a", "b", 1),
    ]
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


# ------------------------------------------------------------------------------ issue 25: figures at a glance


def _texts_outside(fig) -> list[str]:
    """Every text drawn on ``fig`` whose rendered extent leaves the figure (1 px tolerance). Drawn: recorded
    by Text.draw during a real draw, so tick labels of ticks outside the view (never drawn) do not count."""
    from matplotlib.text import Text

    drawn: list[Text] = []
    original = Text.draw

    def recording_draw(self, renderer):
        drawn.append(self)
        return original(self, renderer)

    Text.draw = recording_draw  # type: ignore[method-assign]
    try:
        fig.canvas.draw()
    finally:
        Text.draw = original  # type: ignore[method-assign]
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    out = []
    for t in drawn:
        if not t.get_visible() or not t.get_text().strip():
            continue
        e = t.get_window_extent(renderer)
        if e.x0 < box.x0 - 1 or e.y0 < box.y0 - 1 or e.x1 > box.x1 + 1 or e.y1 > box.y1 + 1:
            out.append(t.get_text())
    assert len(drawn) > 10  # the recording saw the figure's texts
    return out


UCF_NAMES = ["ApplyEyeMakeup", "pan_left", "BalanceBeam", "passing American football (not in game)"]


def test_confusion_is_sized_to_its_class_count_with_counts_that_fill_the_cells() -> None:
    from tdn.reporting.confusion import confusion_figure, confusion_png

    sizes = {c: png_size(confusion_png(_confusion(c), [f"c{i}" for i in range(c)])) for c in (4, 12, 30, 100)}
    widths = [sizes[c][0] for c in (4, 12, 30, 100)]
    heights = [sizes[c][1] for c in (4, 12, 30, 100)]
    assert widths == sorted(widths) and heights == sorted(heights) and widths[0] < widths[-1] / 1.5
    assert sizes[4][0] < 800  # 4 classes: not a poster (0.9 in cells)

    for c, min_pt in ((4, 12.0), (30, 8.0)):
        fig = confusion_figure(_confusion(c, seed=2), [f"c{i}" for i in range(c)])
        ax = fig.axes[0]
        renderer = fig.canvas.get_renderer()
        fig.canvas.draw()
        cell_px = ax.bbox.width / c
        counts = [t for t in ax.texts if t.get_text().isdigit()]
        assert counts and min(t.get_fontsize() for t in counts) >= min_pt, c
        # each count fits in its cell, and is not a speck in it either
        widest = max(t.get_window_extent(renderer).width for t in counts)
        tallest = max(t.get_window_extent(renderer).height for t in counts)
        assert widest < cell_px and tallest > 0.2 * cell_px, (c, widest, tallest, cell_px)


def test_confusion_labels_are_whole_inside_the_figure_and_horizontal_when_they_fit() -> None:
    from tdn.reporting.confusion import confusion_figure

    short = confusion_figure(_confusion(4), ["walk", "run", "jump", "sit"], "models:/tdn/3 on ucf101/val")
    assert {t.get_rotation() for t in short.axes[0].get_xticklabels()} == {0.0}
    assert _texts_outside(short) == []

    for c in (4, 30, 400):
        names = [UCF_NAMES[i % 4] + ("" if c <= 4 else f" {i}") for i in range(c)]
        fig = confusion_figure(_confusion(c), names, "models:/tdn-ucf101/3 on ucf101/val")
        assert _texts_outside(fig) == [], c
        ax = fig.axes[0]
        shown = [t.get_text() for t in ax.get_yticklabels()]
        assert all(s in names for s in shown), c  # whole names, nothing cut
        if c <= 30:
            assert shown == names and {t.get_rotation() for t in ax.get_xticklabels()} != {0.0}
        else:
            assert not [t for t in ax.texts if t.get_text().isdigit()]  # no cell text above 30 classes
    absurd = confusion_figure(_confusion(4), ["x" * 80, "b", "c", "d"])  # a guard, not a layout limit
    first = absurd.axes[0].get_yticklabels()[0].get_text()
    assert first.endswith("\u2026") and len(first) <= 48 and _texts_outside(absurd) == []


def test_per_class_chart_explains_its_colours_and_keeps_them_inside() -> None:
    from tdn.reporting.per_class import per_class_figure

    for c in (4, 60):
        names = [UCF_NAMES[i % 4] + f" {i}" for i in range(c)]
        fig = per_class_figure(class_accuracies(_confusion(c, seed=3), names), "models:/tdn/3 on ucf101/val")
        legends = [a.get_legend() for a in fig.axes if a.get_legend() is not None]
        assert len(legends) == 1
        texts = [t.get_text() for t in legends[0].get_texts()]
        assert len(texts) == 3 and any("50" in t for t in texts) and any("80" in t for t in texts)
        # the legend's colours are the bars' colours
        bar_colours = {p.get_facecolor() for a in fig.axes for p in a.patches}
        legend_colours = {tuple(h.get_facecolor()) for h in legends[0].legend_handles}
        assert bar_colours <= legend_colours
        assert _texts_outside(fig) == []
        renderer = fig.canvas.get_renderer()
        legend_box = legends[0].get_window_extent(renderer)
        assert not any(legend_box.overlaps(a.bbox) for a in fig.axes)  # never over a bar
    w, h = png_size(per_class_png(class_accuracies(_confusion(4), UCF_NAMES)))
    assert w >= 600 and h >= 200


def _spiky(spike: float | None) -> list[EpochRecord]:
    """14 epochs validated each; with ``spike``, epoch 6's val loss jumps to it (one bad validation)."""
    return [
        EpochRecord(
            e,
            12 * e,
            3.0 / e + 0.2,
            min(99.0, 15.0 * e),
            0.01 / e,
            4.0,
            90.0,
            spike if spike is not None and e == 6 else 2.5 / e + 0.3,
            min(95.0, 11.0 * e + 20.0),
            min(100.0, 30.0 * e),
        )
        for e in range(1, 15)
    ]


def test_a_val_loss_spike_keeps_the_other_curves_range_and_is_marked() -> None:
    from tdn.reporting.training_curves import curves_figure, is_spike

    plain = curves_figure(_spiky(None)).axes[0]
    spiked_fig = curves_figure(_spiky(500.0))
    spiked = spiked_fig.axes[0]
    assert plain.get_ylim() == pytest.approx(spiked.get_ylim())  # the spike changes nothing of the range
    assert (
        spiked.get_ylim()[1] < 4.0
        and "clipped" in spiked.get_ylabel()
        and "clipped" not in plain.get_ylabel()
    )
    assert any(t.get_text() == "500" for t in spiked.texts)  # the clipped value is written beside its mark
    assert _texts_outside(spiked_fig) == []
    # a healthy, fast-converging loss (x0.37 per epoch, flat tail) has no spike; a two-epoch jump has two
    assert not any(is_spike([4.6 * np.exp(-e) + 0.3 for e in range(50)]))
    assert is_spike([1.0, 0.9, 30.0, 35.0, 0.8, 0.7]) == [False, False, True, True, False, False]


def test_the_best_label_covers_no_line() -> None:
    from matplotlib.text import Text

    from tdn.reporting.training_curves import curves_figure

    fig = curves_figure(_spiky(None))
    acc = fig.axes[1]
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    best = [t for t in fig.findobj(Text) if "best" in t.get_text()]
    assert best and "95.0%" in best[0].get_text()
    for line in acc.get_lines():
        xy = line.get_xydata()
        dense = (
            np.concatenate([np.linspace(a, b, 50) for a, b in zip(xy[:-1], xy[1:])]) if len(xy) > 1 else xy
        )
        points = acc.transData.transform(dense)
        for t in best:
            box = t.get_window_extent(renderer)
            inside = (
                (points[:, 0] >= box.x0)
                & (points[:, 0] <= box.x1)
                & (points[:, 1] >= box.y0)
                & (points[:, 1] <= box.y1)
            )
            assert not inside.any(), line.get_label()


def test_report_gflops_keep_their_significant_digits(tmp_path: Path) -> None:
    from tdn.reporting.html_report import format_gflops

    assert [format_gflops(g) for g in (0.0475, 3.14159, 36.4, 198.2)] == ["0.0475", "3.14", "36", "198"]
    write_evaluation_report(
        tmp_path, np.eye(3, dtype=int) * 5, ["a", "b", "c"], _summary(gflops_per_view=0.0475)
    )
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert '<td class="num">0.0475</td>' in page and '<td class="num">0.0</td>' not in page


def test_per_class_csv_is_in_percent_and_old_files_still_read() -> None:
    from tdn.reporting.per_class import per_class_csv, read_per_class_csv

    cm = np.array([[2, 1, 0], [0, 4, 0], [0, 0, 0]])
    classes = class_accuracies(cm, ["walk", "run, fast", "sit"])
    text = per_class_csv(classes)
    rows = list(csv.DictReader(text.splitlines()))
    assert list(rows[0]) == ["class_index", "class_name", "videos", "correct", "top1_pct"]
    assert [r["top1_pct"] for r in rows] == ["66.6667", "100.0000", ""]
    assert rows[1]["class_name"] == "run, fast"
    back = read_per_class_csv(text)
    assert [c.top1_pct for c in back] == [pytest.approx(66.6667), 100.0, None]
    old = "class_index,class_name,videos,correct,accuracy\r\n0,walk,3,2,0.666667\r\n1,sit,0,0,\r\n"
    assert [c.top1_pct for c in read_per_class_csv(old)] == [pytest.approx(66.6667), None]
