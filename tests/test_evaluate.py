"""Batch evaluation on a real two-node Ray cluster against a real MLflow server.

The model is a tiny TDN (ResNet-18, width 0.25, 4 segments, 64 px); accuracy is not the point here, the
pipeline is: every view scored once, views of one video merged across shards and replicas, numbers and files
stored with their protocol.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.loading.eval_loader import eval_batches
from pipeline.loading.shard_reading import read_index
from pipeline.synthetic.frame_shards import SplitLayout, render_videos, write_split
from tdn.checkpoints.project import save_checkpoint
from tdn.evaluation.batch_inference import evaluate
from tdn.evaluation.model_source import ModelSource
from tdn.evaluation.protocol import EvalConfig, TrainedSizes, resolve_protocol
from tdn.evaluation.replica_pool import loader_config
from tdn.evaluation.results import load_video_scores
from tdn.evaluation.split import read_split
from tdn.model.networks import ModelConfig, build_model_from_config
from tdn.tracking.registry import parse_models_uri

CLASSES = ["MoveLeft", "MoveRight", "MoveUp"]
TINY = ModelConfig(arch="resnet18", num_classes=3, num_segments=4, width=0.25, dropout=0.0)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = build_model_from_config(TINY)
    # a few random steps make the BN statistics and scores non-trivial
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 4, 5, 3, 64, 64))
    path = str(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    save_checkpoint(path, model.eval(), TINY, CLASSES)
    return path


@pytest.fixture(scope="module")
def videos():
    return render_videos(len(CLASSES), 2, frames=20)


def reference_scores(model: torch.nn.Module, split_dir: Path, cfg: EvalConfig) -> dict[str, np.ndarray]:
    """Per-view softmax computed in this process shard by shard, averaged per video with a plain dict."""
    loader_cfg = loader_config(cfg, resolve_protocol(cfg, read_split(str(split_dir)), TrainedSizes()), "cpu")
    views: dict[str, list[np.ndarray]] = defaultdict(list)
    with torch.inference_mode():
        for shard in sorted(split_dir.glob("*.tar")):
            for b in eval_batches([str(shard)], loader_cfg, 5):
                p = torch.softmax(model(b.x), dim=1).numpy()
                for vid, row in zip(b.video_ids, p):
                    views[vid].append(row)
    return {vid: np.mean(rows, axis=0) for vid, rows in views.items()}


@pytest.mark.integration
def test_10x3_views_split_across_shards_and_replicas(
    ray_cluster, mlflow_server, tiny_checkpoint, videos, tmp_path
):
    # video i's clip v goes to shard (i + v) % 2: every video has views in both shards
    split = write_split(
        tmp_path / "shards",
        videos,
        CLASSES,
        SplitLayout(num_segments=4, clips=2, num_shards=2, shard_of=lambda i, v: (i + v) % 2),
    )
    cfg = EvalConfig(protocol="k400_10x3", clips=2, input_size=64, short_side=64, replicas=2, batch_size=4)
    out = tmp_path / "out"
    outcome = evaluate(ModelSource(uri=tiny_checkpoint), str(split), cfg, out, mlflow_server.uri)

    r = outcome.result
    assert (r.clips, r.crops, r.input_size, r.short_side) == (2, 3, 64, 64)
    assert r.num_videos == len(videos) and r.replicas == 2
    index = read_index(str(split))
    assert r.index_checksum == index.checksum and r.dataset == "synthetic" and r.split == "val"
    assert r.gflops > 0 and r.ms_per_video > 0 and r.videos_per_s == pytest.approx(1000 / r.ms_per_video)

    stored = load_video_scores(out / "per_video_scores.npz")  # allow_pickle=False inside
    assert (stored.num_views == 6).all()
    from tdn.checkpoints.project import load_model_checkpoint

    model, _ = load_model_checkpoint(tiny_checkpoint)
    ref = reference_scores(model.eval(), split, cfg)
    assert sorted(ref) == sorted(stored.video_ids.tolist())
    for vid, row in zip(stored.video_ids, stored.scores):
        np.testing.assert_allclose(row, ref[vid], atol=1e-5)
    top1 = 100.0 * np.mean(stored.scores.argmax(1) == stored.labels)
    assert r.top1_pct == pytest.approx(top1)

    # files and the MLflow run carry the same numbers and the protocol
    row = json.loads((out / "results.json").read_text())
    assert row["top1_pct"] == pytest.approx(r.top1_pct) and row["index_checksum"] == index.checksum
    assert "top1" not in row and row["shards"] == str(split) and row["logged_model_id"] == ""
    assert set(row["per_class_accuracy"]) == set(CLASSES)
    per_class = (out / "per_class.csv").read_text().splitlines()
    assert per_class[0].startswith("class_index") and len(per_class) == 1 + len(CLASSES)
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.html").read_text(encoding="utf-8")
    assert index.checksum in report and "data:image/png;base64," in report and "2 &times; 3" in report

    from tdn.tracking.mlflow_store import tracking_client

    client = tracking_client(mlflow_server.uri)
    run = client.get_run(outcome.run_id)
    assert run.data.tags["tdn.kind"] == "evaluation"
    assert run.data.tags["tdn.index_checksum"] == index.checksum
    assert run.data.params["clips"] == "2" and run.data.params["crops"] == "3"
    # one namespace, accuracies in percent; the count of videos is a param and a tag, not a metric
    assert set(run.data.metrics) == {
        "eval/top1_pct",
        "eval/top5_pct",
        "eval/mean_class_top1_pct",
        "eval/ms_per_video",
        "eval/videos_per_s",
        "eval/gflops_per_view",
    }
    assert run.data.metrics["eval/top1_pct"] == pytest.approx(r.top1_pct)
    assert run.data.params["num_videos"] == run.data.tags["tdn.num_videos"] == str(len(videos))
    # the split is the run's dataset input; a checkpoint file has no logged model to link
    (given,) = run.inputs.dataset_inputs
    assert (given.dataset.name, given.dataset.digest) == ("synthetic/val", index.checksum[:36])
    assert json.loads(given.dataset.source) == {"uri": str(split)} and given.dataset.source_type == "local"
    assert [(t.key, t.value) for t in given.tags] == [("mlflow.data.context", "evaluation")]
    assert json.loads(given.dataset.profile)["num_videos"] == len(videos)
    assert not run.inputs.model_inputs
    names = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert {"results.json", "results.csv", "per_class.csv", "per_video_scores.npz", "confusion.png"} <= names
    assert {"report.html", "per_class.png", "most_confused.csv"} <= names


@pytest.mark.integration
def test_lost_views_and_wrong_protocol_are_errors(ray_cluster, tiny_checkpoint, videos, tmp_path):
    split = write_split(tmp_path / "shards", videos, CLASSES, SplitLayout(num_segments=4, clips=2))
    with pytest.raises(ValueError, match="clip"):
        evaluate(
            ModelSource(uri=tiny_checkpoint),
            str(split),
            EvalConfig(protocol="ssv1x1", input_size=64),
            tmp_path / "o",
            log_to_mlflow=False,
        )
    # a shard listed in the index but gone: a clear error before any inference
    (split / "shard-000001.tar").unlink()
    cfg = EvalConfig(protocol="k400_10x3", clips=2, input_size=64, short_side=64)
    with pytest.raises(FileNotFoundError, match="shard-000001"):
        evaluate(ModelSource(uri=tiny_checkpoint), str(split), cfg, tmp_path / "o", log_to_mlflow=False)


def test_models_uri_parsing():
    assert parse_models_uri("models:/tdn-k400/3") == ("tdn-k400", "3", "")
    assert parse_models_uri("models:/tdn-k400@champion") == ("tdn-k400", "", "champion")
    with pytest.raises(ValueError, match="models:/name"):
        parse_models_uri("models:/tdn-k400/latest")
    with pytest.raises(ValueError, match="exactly one"):
        ModelSource(uri="a.pt", official="b.pth").check()
    with pytest.raises(ValueError, match="unknown protocol"):
        EvalConfig(protocol="k400_30x3")  # type: ignore[arg-type]
