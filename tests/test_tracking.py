"""MLflow tracking that survives its server going away (tdn/tracking/tracker.py), and the model registry round trip
(tdn/tracking/registry.py), against a real ``mlflow server`` on 127.0.0.1 and a real sqlite store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from tdn.model.networks import ModelConfig, build_model_from_config
from tdn.tracking.lineage import ShardDataset
from tdn.tracking.mlflow_store import TRAIN_RUN_TAG, set_global_tracking_uri, tracking_client
from tdn.tracking.tracker import Tracker, TrackingConfig
from tests.services import free_port


def _cfg(uri: str, **kw) -> TrackingConfig:
    return TrackingConfig(uri=uri, experiment=kw.pop("experiment", "tracking-test"), max_backoff_s=1.0, **kw)


def _run(client: MlflowClient, experiment: str, key: str):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{TRAIN_RUN_TAG}` = '{key}'")
    assert len(runs) == 1, f"expected exactly one run tagged {key}, found {len(runs)}"
    return runs[0]


def test_params_metrics_tags_artifacts_arrive(mlflow_server, tmp_path):
    artifact = tmp_path / "config.yaml"
    artifact.write_text("model:\n  arch: resnet18\n")
    tracker = Tracker(_cfg(mlflow_server.uri), run_key="arrive-1")
    tracker.log_params({"optim.lr": 0.01, "model.arch": "resnet18", "long": "x" * 7000})
    tracker.set_tags({"tdn.git_commit": "abc123"})
    for step in range(1, 6):
        tracker.log_metrics({"train/loss": 1.0 / step}, step=step)
    tracker.log_artifact(str(artifact))
    train = ShardDataset("synthetic/train", "c" * 36, str(tmp_path / "train"), "training", num_videos=120)
    val = ShardDataset("synthetic/test", "d" * 36, "s3://bucket/shards/test", "validation")
    tracker.log_inputs([train, val])
    tracker.log_metrics({"val/top1_pct": 50.0}, step=5, dataset=val.ref())
    tracker.close()
    assert tracker.dropped == 0
    client = tracking_client(mlflow_server.uri)
    run = _run(client, "tracking-test", "arrive-1")
    assert run.data.params["optim.lr"] == "0.01" and len(run.data.params["long"]) == 6000
    assert run.data.tags["tdn.git_commit"] == "abc123" and run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / s) for s in range(1, 6)]
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["config.yaml"]
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["synthetic/test", "synthetic/train"]
    got = inputs["synthetic/train"]
    assert (got.dataset.digest, got.dataset.source_type, json.loads(got.dataset.source)) == (
        "c" * 36,
        "local",
        {"uri": str(tmp_path / "train")},
    )
    assert json.loads(got.dataset.profile) == {"num_videos": 120}
    assert [(t.key, t.value) for t in got.tags] == [("mlflow.data.context", "training")]
    assert inputs["synthetic/test"].dataset.source_type == "s3"
    assert [(t.key, t.value) for t in inputs["synthetic/test"].tags] == [
        ("mlflow.data.context", "validation")
    ]
    assert run.data.metrics["val/top1_pct"] == 50.0
    # a restarted worker with the same run key continues the same MLflow run (re-logging params is fine)
    again = Tracker(_cfg(mlflow_server.uri), run_key="arrive-1")
    again.log_params({"optim.lr": 0.01})
    again.log_metrics({"train/loss": 0.1}, step=6)
    again.log_inputs([train])  # logged again: still one input per split
    again.close()
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 6
    assert len(client.get_run(run.info.run_id).inputs.dataset_inputs) == 2


def test_server_down_mid_run_loses_nothing(mlflow_server):
    tracker = Tracker(_cfg(mlflow_server.uri, request_timeout_s=2), run_key="outage-1")
    tracker.log_params({"a": 1})
    tracker.log_metrics({"loss": 1.0}, step=1)
    assert tracker.flush(timeout_s=60)
    mlflow_server.stop()
    try:
        t0 = time.monotonic()
        for step in range(2, 42):
            tracker.log_metrics({"loss": float(step)}, step=step)  # the training thread is never held up
        tracker.set_tags({"during": "outage"})
        assert time.monotonic() - t0 < 1.0
        deadline = time.monotonic() + 30
        while tracker.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert tracker.failures > 0, "the tracker never noticed the server was gone"
    finally:
        mlflow_server.start()
    tracker.log_metrics({"loss": 42.0}, step=42)
    tracker.close()
    assert tracker.dropped == 0
    client = tracking_client(mlflow_server.uri)
    run = _run(client, "tracking-test", "outage-1")
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss"))
    assert steps == list(range(1, 43))
    assert run.data.tags["during"] == "outage" and run.info.status == "FINISHED"


def test_unreachable_server_never_raises(caplog):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    tracker = Tracker(_cfg(uri, request_timeout_s=1, flush_timeout_s=3.0), run_key="nowhere")
    tracker.log_params({"a": 1})
    tracker.log_metrics({"loss": 1.0}, step=1)
    t0 = time.monotonic()
    tracker.close()
    assert time.monotonic() - t0 < 15
    assert tracker.dropped >= 2 and tracker.run_id is None
    assert "not sent" in caplog.text


@pytest.mark.slow
def test_registered_model_loads_back_with_weights_only(tmp_path, monkeypatch):
    """The final model as the trainer registers it, in a sqlite store, loaded by name@alias and by version."""
    from tdn.checkpoints.project import TrainingState, save_checkpoint
    from tdn.tracking.registry import load_registered_model

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    cfg = ModelConfig(arch="resnet18", num_classes=3, num_segments=2, width=0.125)
    model = build_model_from_config(cfg)
    ckpt = tmp_path / "checkpoint.pt"
    save_checkpoint(
        str(ckpt), model, cfg, ["a", "b", "c"], TrainingState(epoch=2, step=10, metrics={"val_top1": 0.75})
    )
    tracker = Tracker(_cfg(uri, experiment="registry-test"), run_key="reg-1")
    tracker.register_model(str(ckpt), "tdn-test", {"val_top1": 0.75}, alias="champion")
    tracker.close()
    assert tracker.dropped == 0
    client = tracking_client(uri)
    version = client.get_model_version_by_alias("tdn-test", "champion")
    assert version.tags["val_top1"] == "0.75" and version.run_id == tracker.run_id
    for model_uri in ("models:/tdn-test@champion", f"models:/tdn-test/{version.version}"):
        loaded, meta = load_registered_model(model_uri, tracking_uri=uri)
        assert meta["class_names"] == ["a", "b", "c"] and meta["epoch"] == 2
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
    # exported from the tracker's background thread too (tests/test_model_export.py loads and runs it)
    from mlflow.models import get_model_info

    info = get_model_info("models:/tdn-test@champion")
    assert {"pytorch", "python_function"} <= set(info.flavors) and info.metadata["class_names"] == [
        "a",
        "b",
        "c",
    ]
    # the version's and the registered model's pages explain themselves (issue 25): the input layout with this
    # model's sizes (no train_config: 224 px), the classes in index order, which URI to load, how to call it
    about = version.description
    assert "`(N, T, 5, 3, H, W)` = `(N, 2, 5, 3, 224, 224)`" in about, about
    assert "**Classes** (index order): 0 a, 1 b, 2 c" in about and "ImageNet mean" in about, about
    assert f'mlflow.pytorch.load_model("models:/tdn-test/{version.version}")' in about, about
    assert f"training run `{tracker.run_id}`" in about and "**Output** float32 `(N, 3)` logits" in about, (
        about
    )
    registered = client.get_registered_model("tdn-test").description
    assert "`(N, 2, 5, 3, 224, 224)`" in registered and "models:/tdn-test@<alias>" in registered, registered
    set_global_tracking_uri(None)
    assert (Path(tmp_path) / "mlruns" / "mlflow.db").exists()
