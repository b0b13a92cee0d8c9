"""Tables built from real evaluation runs in a real MLflow server, and ensembles of stored scores."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from pipeline.synthetic.frame_shards import SplitLayout, render_videos, write_split
from tdn.evaluation.batch_inference import evaluate
from tdn.evaluation.ensemble import combine_scores, ensemble_runs
from tdn.evaluation.metrics import VideoScores
from tdn.evaluation.model_source import ModelSource
from tdn.evaluation.protocol import EvalConfig
from tdn.evaluation.results import EvalResult
from tdn.evaluation.tables import Table
from tdn.tracking.mlflow_store import TRANSFER_TAG, create_run, get_or_create_experiment, tracking_client
from tests.eval_shards import save_tiny_checkpoint

CLASSES = ["MoveLeft", "MoveRight", "MoveUp"]


def _gflops(g: float) -> str:
    return f"{g:.3g}"


def _cells(md: str, first: str) -> list[list[str]]:
    """Rows of a Markdown table whose first cell is ``first``."""
    out = []
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first:
            out.append(cells)
    return out


@pytest.mark.integration
def test_tables_from_real_runs(mlflow_server, tmp_path, capsys):
    uri = mlflow_server.uri
    local = EvalConfig(input_size=64, short_side=64, engine="local")
    videos = render_videos(3, 2, frames=16)
    ssv1 = write_split(tmp_path / "ssv1", videos, CLASSES, SplitLayout(num_segments=4, dataset="ssv1"))
    tdn_ckpt = save_tiny_checkpoint(tmp_path / "tdn.pt", 3, CLASSES, "tdn")
    tsn_ckpt = save_tiny_checkpoint(tmp_path / "tsn.pt", 3, CLASSES, "tsn", seed=2)
    a = evaluate(ModelSource(uri=tdn_ckpt), str(ssv1), local, tmp_path / "a", uri)
    b = evaluate(ModelSource(uri=tsn_ckpt), str(ssv1), local, tmp_path / "b", uri)
    ens, ens_run = ensemble_runs([a.run_id, b.run_id], tmp_path / "ens", uri)
    assert ens.frames == "4+4" and ens.gflops == pytest.approx(a.result.gflops + b.result.gflops)
    mean = (a.video.scores + b.video.scores) / 2
    assert ens.top1_pct == pytest.approx(100 * np.mean(mean.argmax(1) == a.video.labels))

    # Table 4 material: a "transfer" with three UCF101 splits and two HMDB51 splits
    top1 = {}
    for ds, splits in (("ucf101", (1, 2, 3)), ("hmdb51", (1, 2))):
        for k in splits:
            split = write_split(
                tmp_path / f"{ds}{k}",
                render_videos(3, 1, frames=16, seed=k),
                CLASSES,
                SplitLayout(num_segments=4, dataset=ds, split="test"),
            )
            cfg = EvalConfig(
                input_size=64, short_side=64, engine="local", split_number=k, pretrain="synthetic"
            )
            o = evaluate(
                ModelSource(uri=tdn_ckpt),
                str(split),
                cfg,
                tmp_path / f"o{ds}{k}",
                uri,
                extra_tags={TRANSFER_TAG: "transfer-xyz"},
            )
            top1[(ds, k)] = o.result.top1_pct

    # a run logged before issue 15 (metrics top1 / top5 / mean_class_acc / gflops / num_videos) still reads
    client = tracking_client(uri)
    new_only = (
        "top1_pct",
        "top5_pct",
        "mean_class_top1_pct",
        "ms_per_video",
        "videos_per_s",
        "gflops",
        "num_videos",
        "logged_model_id",
        "shards",
        "ensemble_of",
    )
    old_params = {k: v for k, v in a.result.to_dict().items() if k not in new_only}
    old = create_run(client, get_or_create_experiment(client, "pre-15"), "old", {"tdn.kind": "evaluation"})
    old_metrics = {
        "top1": 12.5,
        "top5": 50.0,
        "mean_class_acc": 10.0,
        "ms_per_video": 3.0,
        "videos_per_s": 333.3,
        "gflops": 1.5,
        "num_videos": 6,
    }
    old.log(params={**old_params, "dataset": "ssv2"}, metrics=old_metrics)
    old.finish()

    from jobs.tables import main

    out = tmp_path / "tables"
    assert main(["--tracking-uri", uri, "--out", str(out), "--with-paper", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    md = (out / "table2_ssv1.md").read_text()
    ours = {r[2]: r for r in _cells(md, "TDN")}  # by Frames
    assert ours["4"][5] == f"{a.result.top1_pct:.1f}" and ours["4"][1] == "ResNet18" and ours["4"][3] == "64"
    assert _cells(md, "TDN+TSN")[0][2:6] == ["4+4", "64", _gflops(ens.gflops), f"{ens.top1_pct:.1f}"]
    assert _cells(md, "TSN")[0][5] == f"{b.result.top1_pct:.1f}"
    (old_row,) = _cells((out / "table2_ssv2.md").read_text(), "TDN")
    assert (old_row[4], old_row[5], old_row[6], old_row[9]) == ("1.5", "12.5", "50.0", "6")
    paper = _cells(md, "TDN (paper)")
    assert ["TDN (paper)", "ResNet50", "8", "224", "36", "52.3", "80.6", "-", "-", "-"] in paper
    assert "(paper)" in (out / "table3_kinetics.md").read_text()  # paper rows without runs of ours

    rows = list(csv.reader(io.StringIO((out / "table4_transfer.csv").read_text())))
    assert rows[0][:6] == ["Method", "Pretrain", "Backbone", "Frames", "UCF101", "HMDB51"]
    ours4 = [r for r in rows if r[0] == "TDN" and r[1] == "synthetic"]
    assert len(ours4) == 1
    ucf = np.mean([top1[("ucf101", k)] for k in (1, 2, 3)])
    hmdb = np.mean([top1[("hmdb51", k)] for k in (1, 2)])
    assert ours4[0][4] == f"{ucf:.1f}%" and ours4[0][5] == f"{hmdb:.1f}% (2/3 splits)"
    assert any(r[0] == "TDN (paper)" and r[4] == "97.4%" and r[5] == "76.3%" for r in rows)

    t5 = (out / "table5_timing.html").read_text()
    assert f"{a.result.ms_per_video:.1f}" in t5 and "22.1" in t5 and "<table>" in t5
    assert "ensemble" not in (out / "table5_timing.md").read_text()

    run = client.get_run(printed["run_id"])
    assert run.data.tags["tdn.kind"] == "tables"
    about = run.data.tags["mlflow.note.content"]  # its page says what it is built from (issue 25)
    assert "FINISHED evaluation runs" in about and "(paper)" in about and "rows)" in about, about
    logged = {f.path for f in client.list_artifacts(printed["run_id"], "tables")}
    assert {"tables/table2_ssv1.md", "tables/table4_transfer.csv", "tables/tables.html"} <= logged
    ens_logged = client.get_run(ens_run)
    assert ens_logged.data.tags["tdn.ensemble_of"] == f"{a.run_id},{b.run_id}"
    (ens_input,) = ens_logged.inputs.dataset_inputs  # the members' split
    assert (ens_input.dataset.name, ens_input.dataset.digest) == ("ssv1/val", a.result.index_checksum[:36])
    assert json.loads(ens_input.dataset.source) == {"uri": str(ssv1)}


def test_results_rows_written_before_issue_15_still_read():
    """results.json rows of old evaluations named the percentages top1 / top5 / mean_class_acc."""
    row = {
        "model_id": "m.pt",
        "arch": "resnet18",
        "variant": "tdn",
        "frames": "8",
        "clips": 1,
        "crops": 1,
        "input_size": 224,
        "short_side": 256,
        "dataset": "ssv1",
        "split": "val",
        "index_checksum": "c",
        "num_videos": 3,
        "top1": 33.3,
        "top5": 100.0,
        "mean_class_acc": 30.0,
        "ms_per_video": 1.0,
        "videos_per_s": 1000.0,
        "gflops": 36.0,
    }
    r = EvalResult.from_dict(row)
    assert (r.top1_pct, r.top5_pct, r.mean_class_top1_pct) == (33.3, 100.0, 30.0)
    assert "top1" not in r.to_dict() and r.to_dict()["top1_pct"] == 33.3


def test_ensemble_needs_the_same_videos():
    ids = np.array(["a", "b"])
    x = VideoScores(ids, np.array([0, 1]), np.array([[0.9, 0.1], [0.4, 0.6]]), np.array([1, 1]))
    y = VideoScores(ids[::-1], np.array([1, 0]), np.array([[0.2, 0.8], [0.3, 0.7]]), np.array([1, 1]))
    both = combine_scores([x, y])  # y lists the videos in another order
    np.testing.assert_allclose(both.scores, [[0.6, 0.4], [0.3, 0.7]])
    z = VideoScores(np.array(["a", "c"]), np.array([0, 1]), x.scores, np.array([1, 1]))
    with pytest.raises(ValueError, match="different videos"):
        combine_scores([x, z])
    with pytest.raises(ValueError, match="at least two"):
        combine_scores([x])


def test_table_rendering_escapes():
    t = Table(
        "t", "A <b> table", ["Method", "Top-1"], [["TDN | x", "1.0"], ["<script>", "2.0"]], ["note & more"]
    )
    assert "TDN \\| x" in t.to_markdown()
    assert (
        "&lt;script&gt;" in t.to_html() and "<script>" not in t.to_html() and "note &amp; more" in t.to_html()
    )
    assert list(csv.reader(io.StringIO(t.to_csv())))[1] == ["TDN | x", "1.0"]
