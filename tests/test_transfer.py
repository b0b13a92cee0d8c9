"""Transfer end to end: a tiny "Kinetics" checkpoint fine-tuned on synthetic UCF101 and HMDB51 (real encoded
videos and official split files from pipeline.synthetic.generate), 3 splits each, on a real Ray cluster and MLflow."""

from __future__ import annotations

import json

import pytest
import torch

from pipeline.config import load_config
from pipeline.synthetic.generate import SyntheticConfig, generate
from tdn.checkpoints.project import load_checkpoint
from tdn.evaluation.model_source import ModelSource
from tdn.evaluation.transfer import TransferConfig, prepare_init, run_transfer
from tests.eval_shards import save_tiny_checkpoint


def test_prepare_init_keeps_backbone_and_makes_a_new_head(tmp_path):
    src = save_tiny_checkpoint(tmp_path / "k.pt", 3, ["a", "b", "c"], num_segments=8)
    out = str(tmp_path / "init.pt")
    cfg = prepare_init(ModelSource(uri=src), 3, ["x", "y", "z"], 16, 0.8, out)
    assert (cfg.num_segments, cfg.dropout, cfg.num_classes) == (16, 0.8, 3)
    before, after = load_checkpoint(src)["model"], load_checkpoint(out)["model"]
    assert torch.equal(before["layer3.0.conv1.weight"], after["layer3.0.conv1.weight"])
    # same class count, still a fresh head (the released recipe replaces new_fc)
    assert not torch.equal(before["fc.weight"], after["fc.weight"]) and after["fc.bias"].abs().sum() == 0
    assert load_checkpoint(out)["class_names"] == ["x", "y", "z"]
    # the architecture follows the pretrained model (here a TSN with 5 classes -> 2 new ones)
    other = save_tiny_checkpoint(tmp_path / "r.pt", 5, list("abcde"), variant="tsn")
    cfg2 = prepare_init(ModelSource(uri=other), 2, ["x", "y"], 16, 0.8, str(tmp_path / "init2.pt"))
    assert (
        cfg2.variant == "tsn"
        and load_checkpoint(str(tmp_path / "init2.pt"))["model"]["fc.weight"].shape[0] == 2
    )


def test_recipe_defaults_survive_partial_overrides(repo_root):
    cfg = load_config(TransferConfig, repo_root / "jobs/configs/transfer_k400_r50.yaml", ["optim.epochs=2"])
    assert (cfg.optim.lr, cfg.optim.steps, cfg.optim.epochs, cfg.num_segments, cfg.dropout) == (
        0.002,
        [10, 20],
        2,
        16,
        0.8,
    )
    bare = load_config(TransferConfig, None, ["optim.epochs=3"])
    assert bare.optim.lr == 0.002 and bare.optim.reference_batch == 128 and bare.splits == [1, 2, 3]


def test_cli_short_forms_keep_the_recipe():
    from jobs.cli import parse
    from jobs.transfer import JOB

    c, _ = parse(JOB, ["--checkpoint", "k.pt", "--ucf101", "/u", "--hmdb51", "/h", "--optim.epochs", "3"])
    assert (c.pretrained.uri, c.data.ucf101_root, c.data.hmdb51_root) == ("k.pt", "/u", "/h")
    assert (c.optim.epochs, c.optim.lr, c.optim.steps) == (3, 0.002, [10, 20])


@pytest.mark.integration
def test_transfer_ucf101_hmdb51_three_splits(ray_cluster, mlflow_server, tmp_path, monkeypatch):
    # The one-worker test server answers slowly while six splits train on 2 cores (10 s read timeouts seen)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    small = dict(classes=2, min_frames=16, max_frames=24, sizes=((64, 48),), fps=(25,))
    generate(SyntheticConfig(layout="ucf101", videos_per_class=6, **small), tmp_path / "ucf")
    generate(SyntheticConfig(layout="hmdb51", videos_per_class=5, **small), tmp_path / "hmdb")
    kinetics = save_tiny_checkpoint(tmp_path / "k400.pt", 5, list("abcde"), num_segments=4)

    cfg = load_config(
        TransferConfig,
        None,
        [
            f"pretrained.uri={kinetics}",
            f"data.ucf101_root={tmp_path / 'ucf'}",
            f"data.hmdb51_root={tmp_path / 'hmdb'}",
            f"work_dir={tmp_path / 'work'}",
            f"tracking_uri={mlflow_server.uri}",
            "num_segments=4",
            "shard.train.views=1",
            "shard.train.short_side=56",
            "shard.test.short_side=56",
            "optim.epochs=1",
            "optim.lr=0.01",
            "optim.reference_batch=4",
            "loader.batch_size=4",
            "loader.num_workers=0",
            "loader.input_size=48",
            "loader.eval_short_side=56",  # the shards' short side: a larger one would upscale every crop
            "loader.decode_threads=1",
            "run.workers=1",
            "eval.engine=local",
            "eval.input_size=48",
            "eval.short_side=56",
            "parallel_splits=6",
        ],
    )
    report = run_transfer(cfg)

    assert [(r.dataset, r.split) for r in report.splits] == [
        ("ucf101", 1),
        ("ucf101", 2),
        ("ucf101", 3),
        ("hmdb51", 1),
        ("hmdb51", 2),
        ("hmdb51", 3),
    ]
    ucf = [r.top1_pct for r in report.splits if r.dataset == "ucf101"]
    assert report.mean_top1_pct["ucf101"] == pytest.approx(sum(ucf) / 3)
    assert {r.num_videos for r in report.splits if r.dataset == "ucf101"} == {4}  # 2 test videos per class
    assert {r.num_videos for r in report.splits if r.dataset == "hmdb51"} == {4}  # 30% of 5 per class

    from tdn.tracking.mlflow_store import tracking_client

    client = tracking_client(mlflow_server.uri)
    parent = client.get_run(report.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["tdn.kind"] == "transfer"
    mean_hmdb = parent.data.metrics["transfer/hmdb51_mean_top1_pct"]
    assert mean_hmdb == pytest.approx(report.mean_top1_pct["hmdb51"])
    assert parent.data.metrics["transfer/ucf101_split2_top1_pct"] == report.splits[1].top1_pct
    assert all(key.startswith("transfer/") for key in parent.data.metrics)
    assert parent.data.tags["mlflow.source.type"] == "LOCAL" and parent.data.tags["mlflow.user"]
    assert parent.data.params["optim.steps"] == "[10, 20]" and parent.data.params["dropout"] == "0.8"
    about = parent.data.tags["mlflow.note.content"]  # its page says what was transferred how (issue 25)
    assert "to ucf101, hmdb51" in about and "dropout 0.8" in about, about
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{report.parent_run_id}'"
    )
    assert len(children) == 6
    for child in children:
        # the trainer's tracker logged into the child run created for it
        assert child.data.tags["tdn.kind"] == "train" and child.data.tags["tdn.dataset"] in (
            "ucf101",
            "hmdb51",
        )
        assert "transfer/test_top1_pct" in child.data.metrics
        assert f"split {child.data.tags['tdn.split_number']}**" in child.data.tags["mlflow.note.content"]
        assert not any(key.startswith("final/") for key in child.data.metrics)
        assert child.data.tags["mlflow.user"]  # the trainer's source tags, taken on the driver
        (train_input,) = [i for i in child.inputs.dataset_inputs if i.tags[0].value == "training"]
        assert train_input.dataset.name == f"{child.data.tags['tdn.dataset']}/train"
        ev = client.get_run(child.data.tags["tdn.eval_run_id"])
        assert (
            ev.data.tags["tdn.kind"] == "evaluation"
            and ev.data.tags["mlflow.parentRunId"] == child.info.run_id
        )
        (tested,) = ev.inputs.dataset_inputs
        assert tested.dataset.name == f"{child.data.tags['tdn.dataset']}/test"
        assert tested.tags[0].value == "evaluation"
    saved = json.loads((tmp_path / "work" / "transfer_results.json").read_text())
    assert saved["mean_top1_pct"] == report.mean_top1_pct

    from tdn.evaluation.table_runs import load_evaluations
    from tdn.evaluation.tables import build_tables

    table4 = [t for t in build_tables(load_evaluations(mlflow_server.uri)) if t.name == "table4_transfer"][0]
    row = [r for r in table4.rows if r[1] == "Kinetics"]
    assert len(row) == 1 and row[0][4] == f"{report.mean_top1_pct['ucf101']:.1f}%"
