"""Unlabelled data everywhere (issue 24 item 7): the shard job takes a plain folder of videos (sub-folders =
classes, flat = unlabelled); evaluating an unlabelled split writes per-video scores and predictions, no
accuracy, says so in one line and exits 0; a labelled split's report.html shows Grad-CAM strips of videos of
its most-confused pairs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from jobs.evaluate import main as evaluate_main
from pipeline.datasets import DatasetConfig, load_dataset
from pipeline.datasets.common import AnnotationError
from pipeline.shards.job import ShardConfig, SplitShardConfig, run_shard_job
from tdn.evaluation.results import EvalResult
from tdn.evaluation.summaries import evaluation_summary
from tests.object_model import MOTIONS, SIZE, T, encode_clips, object_clips, untrained_object_tdn


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    return encode_clips(object_clips(8, "unlabelled"), tmp_path_factory.mktemp("plain"), "h264", "c")


def _shard(root: Path, out: Path) -> ShardConfig:
    centre = SplitShardConfig("centre", 1, SIZE)
    return ShardConfig(
        dataset=DatasetConfig(format="csv", root=str(root)),  # no annotations: a plain folder
        output=str(out),
        num_segments=T,
        train=centre,
        test=centre,
        videos_per_shard=4,
        progress_interval_s=1e9,
    )


def test_plain_folder_layouts(clips, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in clips[:3]:
        shutil.copy(p, flat / p.name)
    index = load_dataset(DatasetConfig(format="csv", root=str(flat)))
    assert index.name == "folder" and index.classes == [] and list(index.splits) == ["test"]
    assert sorted(r.video_id for r in index.splits["test"]) == sorted(p.name for p in clips[:3])
    assert {r.label for r in index.splits["test"]} == {-1}
    nested = tmp_path / "nested"
    for split, some in (("train", clips[:4]), ("val", clips[4:6])):
        for p in some:
            (nested / split / p.stem.split("-", 1)[1]).mkdir(parents=True, exist_ok=True)
            shutil.copy(p, nested / split / p.stem.split("-", 1)[1] / p.name)
    index = load_dataset(DatasetConfig(format="folder", root=str(nested)))
    assert index.classes == sorted(MOTIONS) and sorted(index.splits) == ["train", "val"]
    video = index.splits["val"][0]
    assert video.video_id.startswith("val/") and index.classes[video.label] in video.video_id
    shutil.copy(clips[0], nested / "train" / "stray.mp4")
    with pytest.raises(AnnotationError, match="both directly in the folder .*stray.mp4"):
        load_dataset(DatasetConfig(format="folder", root=str(nested)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnnotationError, match="no .csv files and no video files"):
        load_dataset(DatasetConfig(format="csv", root=str(tmp_path / "empty")))


@pytest.mark.integration
def test_unlabelled_split_scores_and_predicts_without_accuracy(ray_cluster, clips, tmp_path, capsys):
    flat = tmp_path / "myvideos"
    flat.mkdir()
    for p in clips:
        shutil.copy(p, flat / p.name)
    summary = run_shard_job(_shard(flat, tmp_path / "shards"))
    assert list(summary.splits) == ["test"] and summary.splits["test"].videos == len(clips)
    ckpt = untrained_object_tdn(tmp_path / "m.pt")
    out = tmp_path / "eval"
    code = evaluate_main(
        [
            "--shards",
            str(tmp_path / "shards" / "test"),
            "--model",
            ckpt,
            "--eval.engine",
            "local",
            "--out",
            str(out),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.out + captured.err
    (note,) = [line for line in captured.out.splitlines() if "no labels" in line]
    assert note.startswith("evaluate: ") and "no accuracy" in note and str(out) in note
    printed = json.loads(captured.out.strip().splitlines()[-1])
    assert printed["top1_pct"] is None and printed["num_videos"] == len(clips) and printed["run_id"] == ""
    result = json.loads((out / "results.json").read_text())
    assert result["labelled"] is False and result["top1_pct"] is None
    # the summary without --json: the job's EvalResult holds NaN accuracies, never printed as "nan%"
    nan = float("nan")
    accuracies = {"top1_pct": nan, "top5_pct": nan, "mean_class_top1_pct": nan}
    lines = evaluation_summary("evaluate", EvalResult.from_dict({**result, **accuracies}), str(out), "", "")
    text = "\n".join(lines.lines())
    assert "top-1 n/a, top-5 n/a, mean class top-1 n/a" in text and "nan" not in text.lower(), text
    assert "MLflow run  none (an unlabelled split has no accuracy to record)" in text, text
    with np.load(out / "per_video_scores.npz", allow_pickle=False) as scores:
        assert scores["scores"].shape == (len(clips), len(MOTIONS)) and set(scores["labels"]) == {-1}
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert sorted(r["video_id"] for r in rows) == sorted(p.name for p in clips)
    assert all(r["label"] == "" and r["top1"] in MOTIONS and 0 < float(r["prob1"]) <= 1 for r in rows)
    assert not (out / "report.html").exists() and not (out / "per_class.csv").exists()


@pytest.mark.integration
def test_labelled_folder_report_shows_grad_cam_of_confused_pairs(ray_cluster, clips, tmp_path):
    from tdn.evaluation.batch_inference import evaluate
    from tdn.evaluation.model_source import ModelSource
    from tdn.evaluation.protocol import EvalConfig

    root = tmp_path / "labelled"
    for p in clips:  # one sub-folder per class
        (root / p.stem.split("-", 1)[1]).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, root / p.stem.split("-", 1)[1] / p.name)
    run_shard_job(_shard(root, tmp_path / "shards"))
    outcome = evaluate(
        ModelSource(uri=untrained_object_tdn(tmp_path / "u.pt")),
        str(tmp_path / "shards" / "train"),
        EvalConfig(engine="local", report_cams=2),
        tmp_path / "eval",
        log_to_mlflow=False,
    )
    assert outcome.note == "" and outcome.result.top1_pct < 100  # an untrained model confuses classes
    page = (tmp_path / "eval" / "report.html").read_text()
    assert "Grad-CAM of videos of the most-confused pairs" in page
    captions = [line for line in page.splitlines() if "<figcaption>" in line and ": true " in line]
    assert 1 <= len(captions) <= 2 and all("predicted" in c for c in captions)
    assert page.count("data:image/png;base64,") == len(captions) + 2  # the strips, confusion, per class
