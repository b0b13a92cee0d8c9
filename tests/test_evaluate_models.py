"""Evaluation of a registered MLflow model version (by alias) and of an official-layout TDN checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tdn.checkpoint import load_official_checkpoint, save_checkpoint
from tdn.evaluate import EvalConfig, ModelSource, _loader_config, evaluate
from tdn.model import ModelConfig, build_model_from_config
from tdn.results import load_video_scores
from tests.eval_shards import register_checkpoint_version, render_videos, write_split
from tests.test_checkpoint import official_state_dict

CLASSES = ["MoveLeft", "MoveRight", "MoveUp"]


@pytest.fixture(scope="module")
def split_1clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards1")
    return write_split(root, render_videos(3, 2, frames=20), CLASSES, num_segments=4, clips=1, num_shards=2)


@pytest.mark.slow
def test_registered_model_by_alias(ray_cluster, mlflow_server, split_1clip, tmp_path):
    cfg = ModelConfig(arch="resnet18", num_classes=3, num_segments=4, width=0.25, variant="tsn", dropout=0.0)
    torch.manual_seed(1)
    ckpt = str(tmp_path / "m.pt")
    save_checkpoint(ckpt, build_model_from_config(cfg).eval(), cfg, CLASSES)
    version, train_run = register_checkpoint_version(mlflow_server.uri, ckpt, "tiny-eval", "champion")

    out = evaluate(ModelSource(uri="models:/tiny-eval@champion"), str(split_1clip),
                   EvalConfig(input_size=64, short_side=72), tmp_path / "out", mlflow_server.uri)  # fmt: skip
    r = out.result
    assert r.model_id == f"models:/tiny-eval/{version}" and r.model_name == "tiny-eval"
    assert r.model_version == version and r.model_run_id == train_run
    assert r.variant == "tsn" and r.frames == "4" and (r.clips, r.crops, r.input_size) == (1, 1, 64)

    from mlflow.tracking import MlflowClient

    tags = MlflowClient(mlflow_server.uri).get_run(out.run_id).data.tags
    assert tags["tdn.model_name"] == "tiny-eval" and tags["tdn.model_version"] == version
    assert tags["tdn.model_run_id"] == train_run and tags["tdn.kind"] == "evaluation"


@pytest.mark.slow
def test_official_checkpoint_through_the_cli(ray_cluster, split_1clip, tmp_path):
    """An official-layout ResNet-50 TDN file evaluated by jobs/evaluate.py gives the scores of the same
    weights loaded in this process (so the import and the distributed path agree)."""
    from jobs.evaluate import main

    path = tmp_path / "official.pth.tar"
    torch.save({"epoch": 1, "arch": "resnet50", "state_dict": official_state_dict(num_classes=3, seed=3)}, path)
    out = tmp_path / "out"
    rc = main(["--official-checkpoint", str(path), "--arch", "resnet50", "--segments", "4", "--num-classes", "3",
               "--shards", str(split_1clip), "--protocol", "ssv1x1", "--eval.input_size", "64",
               "--eval.short_side", "72", "--replicas", "2", "--out", str(out), "--tracking_uri", ""])  # fmt: skip
    assert rc == 0
    row = json.loads((out / "results.json").read_text())
    assert row["model_id"] == f"official:{path}" and row["arch"] == "resnet50" and row["num_videos"] == 6
    stored = load_video_scores(out / "per_video_scores.npz")

    from pipeline.loader import eval_batches

    model = load_official_checkpoint(str(path), "resnet50", 4, 3)
    cfg = EvalConfig(input_size=64, short_side=72)
    ref = {}
    with torch.inference_mode():
        for b in eval_batches(str(split_1clip), _loader_config(cfg, "cpu"), 8):
            for vid, p in zip(b.video_ids, torch.softmax(model(b.x), 1).numpy()):
                ref[vid] = p
    for vid, row_scores in zip(stored.video_ids, stored.scores):
        np.testing.assert_allclose(row_scores, ref[vid], atol=1e-5)


def test_cli_rejects_bad_arguments(capsys):
    from jobs.evaluate import main

    with pytest.raises(SystemExit):
        main(["--shards", "x"])  # no model
    assert "exactly one of model.uri" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", "m.pt", "--shards", "x", "--protocol", "k400_30x3"])
    assert "k400_30x3" in capsys.readouterr().err
