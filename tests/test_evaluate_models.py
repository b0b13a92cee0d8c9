"""Evaluation of a registered MLflow model version (by alias) and of an official-layout TDN checkpoint."""

from __future__ import annotations

import getpass
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.loading.shard_reading import read_index
from pipeline.synthetic.frame_shards import SplitLayout, render_videos, write_split
from tdn.checkpoints.official import load_official_checkpoint
from tdn.checkpoints.official_random import random_official_state_dict
from tdn.checkpoints.project import save_checkpoint
from tdn.evaluation.batch_inference import evaluate
from tdn.evaluation.model_source import ModelSource
from tdn.evaluation.protocol import EvalConfig, TrainedSizes, resolve_protocol
from tdn.evaluation.replica_pool import loader_config
from tdn.evaluation.results import load_video_scores
from tdn.evaluation.split import read_split
from tdn.model.networks import ModelConfig, build_model_from_config
from tests.eval_shards import register_checkpoint_version

CLASSES = ["MoveLeft", "MoveRight", "MoveUp"]


@pytest.fixture(scope="module")
def split_1clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards1")
    return write_split(root, render_videos(3, 2, frames=20), CLASSES, SplitLayout(num_segments=4))


def _train_briefly(train_dir: Path, cfg: ModelConfig, steps: int) -> tuple[torch.nn.Module, list[float]]:
    """A few SGD steps in this process on the synthetic motion shards (enough to move the weights)."""
    from pipeline.loading.config import LoaderConfig
    from pipeline.loading.train_loader import train_loader

    torch.manual_seed(0)
    model = build_model_from_config(cfg).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    lcfg = LoaderConfig(batch_size=8, num_workers=0, input_size=56, decode_threads=1, shuffle_buffer=16)
    losses: list[float] = []
    epoch = 0
    while len(losses) < steps:
        for x, y in train_loader(str(train_dir), lcfg, rank=0, world_size=1, epoch=epoch):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if len(losses) == steps:
                break
        epoch += 1
    return model.eval(), losses


@pytest.mark.integration
def test_trained_model_registered_and_evaluated_by_alias(mlflow_server, synthetic_shards, tmp_path):
    """A model trained on the synthetic motion shards, registered like training does, evaluated through
    models:/name@champion; the run is linked to the version and its numbers match an in-process count."""
    cfg = ModelConfig(arch="resnet18", num_classes=4, num_segments=4, width=0.25, dropout=0.0)
    model, losses = _train_briefly(synthetic_shards / "train", cfg, steps=4)
    assert all(np.isfinite(losses))
    index = read_index(str(synthetic_shards / "test"))
    ckpt = str(tmp_path / "trained.pt")
    save_checkpoint(ckpt, model, cfg, index.classes)
    version, train_run = register_checkpoint_version(mlflow_server.uri, ckpt, "tiny-eval", "champion")

    ecfg = EvalConfig(input_size=56, short_side=64, engine="local")
    before_ms = int(time.time() * 1000)
    out = evaluate(
        ModelSource(uri="models:/tiny-eval@champion"),
        str(synthetic_shards / "test"),
        ecfg,
        tmp_path / "out",
        mlflow_server.uri,
    )
    r = out.result
    assert r.model_id == f"models:/tiny-eval/{version}" and r.model_name == "tiny-eval"
    assert r.model_version == version and r.model_run_id == train_run
    assert (
        r.frames == "4"
        and (r.clips, r.crops, r.input_size) == (1, 1, 56)
        and r.num_videos == index.num_videos
    )

    from pipeline.loading.eval_loader import eval_batches

    correct, seen = 0, 0
    with torch.inference_mode():
        test_split = read_split(str(synthetic_shards / "test"))
        loader_cfg = loader_config(ecfg, resolve_protocol(ecfg, test_split, TrainedSizes()), "cpu")
        for b in eval_batches(str(synthetic_shards / "test"), loader_cfg, 16):
            correct += int((model(b.x).argmax(1) == b.labels).sum())
            seen += len(b.labels)
    assert seen == index.num_videos and r.top1_pct == pytest.approx(100.0 * correct / seen)

    from tdn.tracking.mlflow_store import tracking_client

    client = tracking_client(mlflow_server.uri)
    tags = client.get_run(out.run_id).data.tags
    assert tags["tdn.model_name"] == "tiny-eval" and tags["tdn.model_version"] == version
    assert tags["tdn.model_run_id"] == train_run and tags["tdn.kind"] == "evaluation"
    mv = client.get_model_version("tiny-eval", version)
    assert mv.tags[f"tdn.eval.{index.dataset}.test.ssv1x1.run_id"] == out.run_id
    assert mv.tags[f"tdn.eval.{index.dataset}.test.ssv1x1.top1_pct"] == f"{r.top1_pct:.2f}"

    # lineage (issue 15): the split as the run's dataset input, the version's logged model as its model input
    run = client.get_run(out.run_id)
    split_name, digest = f"{index.dataset}/test", index.checksum[:36]
    (given,) = run.inputs.dataset_inputs
    assert (given.dataset.name, given.dataset.digest) == (split_name, digest)
    assert json.loads(given.dataset.source) == {"uri": str(synthetic_shards / "test")}
    assert [(t.key, t.value) for t in given.tags] == [("mlflow.data.context", "evaluation")]
    model_id = mv.source.removeprefix("models:/")  # the version points at its logged model
    assert model_id.startswith("m-") and r.logged_model_id == model_id
    assert [m.model_id for m in run.inputs.model_inputs] == [model_id]
    # ... and every eval/ metric is on the logged model's page, with this run and the split
    listed = {m.key: m for m in client.get_logged_model(model_id).metrics if m.run_id == out.run_id}
    assert set(listed) == set(run.data.metrics) and listed["eval/top1_pct"].value == pytest.approx(r.top1_pct)
    assert {(m.dataset_name, m.dataset_digest) for m in listed.values()} == {(split_name, digest)}
    # source, user and commit, taken in the launching process
    assert run.data.tags["mlflow.user"] == getpass.getuser()
    assert run.data.tags["mlflow.source.type"] == "LOCAL"
    assert run.data.tags["mlflow.source.name"]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert run.data.tags["mlflow.source.git.commit"] == head.stdout.strip()
    # a page that explains itself (issue 25): the version in the run's name, a description of what was
    # evaluated on what and how, and a duration that covers the work (the run starts when the work does)
    assert run.info.run_name == f"eval-tiny-eval-v{version}-{index.dataset}-test"
    about = run.data.tags["mlflow.note.content"]
    assert f"`models:/tiny-eval/{version}`" in about and f"**{index.dataset}/test**" in about, about
    assert "**Protocol** `ssv1x1`: 1 clip(s) x 1 crop(s) of 56 px" in about, about
    assert before_ms <= run.info.start_time <= before_ms + 30_000, (before_ms, run.info.start_time)
    assert run.info.end_time - run.info.start_time >= r.ms_per_video * r.num_videos * 0.9


@pytest.mark.integration
def test_official_checkpoint_through_the_cli(ray_cluster, split_1clip, tmp_path):
    """An official-layout ResNet-50 TDN file evaluated by jobs/evaluate.py gives the scores of the same
    weights loaded in this process (so the import and the distributed path agree)."""
    from jobs.evaluate import main

    path = tmp_path / "official.pth.tar"
    torch.save(
        {"epoch": 1, "arch": "resnet50", "state_dict": random_official_state_dict(num_classes=3, seed=3)},
        path,
    )
    out = tmp_path / "out"
    rc = main(
        [
            "--official-checkpoint",
            str(path),
            "--arch",
            "resnet50",
            "--segments",
            "4",
            "--num-classes",
            "3",
            "--shards",
            str(split_1clip),
            "--protocol",
            "ssv1x1",
            "--eval.input_size",
            "64",
            "--eval.short_side",
            "72",
            "--replicas",
            "2",
            "--out",
            str(out),
            "--tracking_uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
        ]
    )
    assert rc == 0
    row = json.loads((out / "results.json").read_text())
    assert row["model_id"] == f"official:{path}" and row["arch"] == "resnet50" and row["num_videos"] == 6
    stored = load_video_scores(out / "per_video_scores.npz")

    from pipeline.loading.eval_loader import eval_batches

    model = load_official_checkpoint(str(path), "resnet50", 4, 3)
    cfg = EvalConfig(input_size=64, short_side=72)
    ref = {}
    with torch.inference_mode():
        loader_cfg = loader_config(
            cfg, resolve_protocol(cfg, read_split(str(split_1clip)), TrainedSizes()), "cpu"
        )
        for b in eval_batches(str(split_1clip), loader_cfg, 8):
            for vid, p in zip(b.video_ids, torch.softmax(model(b.x), 1).numpy()):
                ref[vid] = p
    for vid, row_scores in zip(stored.video_ids, stored.scores):
        np.testing.assert_allclose(row_scores, ref[vid], atol=1e-5)


def test_cli_rejects_bad_arguments(capsys):
    from jobs.evaluate import main

    assert main(["--shards", "x"]) == 2  # no model
    assert "exactly one of model.uri" in capsys.readouterr().err
    assert main(["--model", "m.pt", "--shards", "x", "--protocol", "k400_30x3"]) == 2
    assert "k400_30x3" in capsys.readouterr().err


def test_shards_on_s3(s3_server, split_1clip, tmp_path):
    """Shards and checkpoint on an S3 endpoint (moto server), scored in this process (engine local)."""
    from pipeline import storage

    bucket = s3_server.create_bucket("eval-shards")
    for f in sorted(split_1clip.iterdir()):
        storage.upload_file_atomic(f, f"{bucket}/val/{f.name}")
    cfg = ModelConfig(arch="resnet18", num_classes=3, num_segments=4, width=0.25, dropout=0.0)
    local_ckpt = str(tmp_path / "m.pt")
    save_checkpoint(local_ckpt, build_model_from_config(cfg).eval(), cfg, CLASSES)
    storage.upload_file_atomic(local_ckpt, f"{bucket}/m.pt")
    ecfg = EvalConfig(input_size=64, short_side=72, engine="local")
    remote = evaluate(
        ModelSource(uri=f"{bucket}/m.pt"), f"{bucket}/val", ecfg, tmp_path / "s3", log_to_mlflow=False
    )
    local = evaluate(
        ModelSource(uri=local_ckpt), str(split_1clip), ecfg, tmp_path / "local", log_to_mlflow=False
    )
    assert remote.result.index_checksum == local.result.index_checksum and remote.result.num_videos == 6
    np.testing.assert_allclose(remote.video.scores, local.video.scores, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="index"):
        evaluate(
            ModelSource(uri=f"{bucket}/m.pt"), f"{bucket}/nowhere", ecfg, tmp_path / "x", log_to_mlflow=False
        )
