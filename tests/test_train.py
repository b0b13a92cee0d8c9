"""Training end to end on a real two-node Ray cluster (2 CPU workers, DDP over gloo) and a real MLflow server.

The model is the tiny synthetic recipe (jobs/configs/synthetic_tiny.yaml: ResNet-18 at width 0.25, 56 px,
4 segments) on ``synthetic_shards``: four classes that differ only in motion (pan left / right, zoom in / out),
so a frame-level model (TSN) cannot beat chance while TDN can.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

from pipeline.config import load_config
from pipeline.loading.shard_reading import read_index
from tdn.tracking.mlflow_store import TRAIN_RUN_TAG, tracking_client
from tdn.training.config import TrainConfig

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "jobs" / "configs" / "synthetic_tiny.yaml"


def tiny(shards: Path, tmp_path: Path, *overrides: str) -> TrainConfig:
    return load_config(TrainConfig, RECIPE, [
        f"data.shards={shards}", f"run.storage_path={tmp_path / 'ray'}", "tracking.enabled=false", *overrides,
    ])  # fmt: skip


def fit(cfg: TrainConfig):
    from tdn.training.launcher import fit as trainer_fit

    return trainer_fit(cfg)


def ckpt_of(checkpoint) -> dict:
    return torch.load(Path(checkpoint.path) / "checkpoint.pt", map_location="cpu", weights_only=True)


def mlflow_run(uri: str, experiment: str, run_key: str):
    client = tracking_client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return client, None
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{TRAIN_RUN_TAG}` = '{run_key}'")
    return client, (runs[0] if runs else None)


def stop_server_after_first_metric(server, experiment: str, run_key: str, down_s: float) -> threading.Thread:
    """Takes the tracking server away once the run has logged something, brings it back ``down_s`` later."""

    def outage() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                client, run = mlflow_run(server.uri, experiment, run_key)
                if run is not None and run.data.metrics:
                    break
            except Exception:  # noqa: BLE001 - the server may be busy; try again
                pass
            time.sleep(0.5)
        server.stop()
        outage.stopped_at = time.monotonic()
        time.sleep(down_s)
        server.start()
        outage.restarted_at = time.monotonic()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    thread.outage = outage
    return thread


@pytest.fixture(scope="module")
def tdn_and_tsn(ray_cluster, synthetic_shards, mlflow_server, tmp_path_factory):
    """TDN and TSN trained with the same recipe and budget; the server goes down during the TSN run."""
    tmp = tmp_path_factory.mktemp("tdn_vs_tsn")
    common = ("tracking.enabled=true", f"tracking.uri={mlflow_server.uri}", "tracking.flush_timeout_s=240")
    tdn_cfg = tiny(synthetic_shards, tmp, *common, "run.name=tdn-synthetic", "tracking.registered_alias=test")
    tdn = fit(tdn_cfg)
    tsn_cfg = tiny(synthetic_shards, tmp, *common, "run.name=tsn-synthetic", "model.variant=tsn",
                   "tracking.registered_model=")  # fmt: skip
    outage = stop_server_after_first_metric(mlflow_server, tsn_cfg.tracking.experiment, "tsn-synthetic", 8.0)
    tsn = fit(tsn_cfg)
    outage.join(timeout=300)
    return {"tdn": tdn, "tsn": tsn, "cfg": tdn_cfg, "outage": outage.outage}


def test_tdn_learns_motion_and_beats_tsn(tdn_and_tsn):
    tdn, tsn = tdn_and_tsn["tdn"].metrics, tdn_and_tsn["tsn"].metrics
    print(
        f"\nsynthetic motion, 4 classes (chance 0.25), same recipe and budget: "
        f"TDN val top-1 {tdn['val_top1']:.3f} (train loss {tdn['train_loss']:.3f}), "
        f"TSN val top-1 {tsn['val_top1']:.3f} (train loss {tsn['train_loss']:.3f})"
    )
    assert tdn["epoch"] == tdn_and_tsn["cfg"].optim.epochs
    assert tdn["val_top1"] >= 0.5, "TDN should end far above chance (0.25)"
    assert tdn["val_top1"] >= tsn["val_top1"] + 0.2
    assert tsn["val_top1"] <= 0.45, "frames alone carry no class information in this dataset"


def test_mlflow_receives_params_metrics_artifacts_and_model(tdn_and_tsn, mlflow_server):
    cfg = tdn_and_tsn["cfg"]
    client, run = mlflow_run(mlflow_server.uri, cfg.tracking.experiment, "tdn-synthetic")
    assert run is not None and run.info.status == "FINISHED"
    params = run.data.params
    assert params["model.variant"] == "tdn" and params["optim.lr"] == str(cfg.optim.lr)
    assert params["data.shards"] == cfg.data.shards and params["loader.input_size"] == "56"
    index = read_index(str(Path(cfg.data.shards) / "train"))
    assert index.num_videos == 120
    assert run.data.tags["tdn.train_index_checksum"] == index.checksum
    assert "tdn.git_commit" in run.data.tags
    epochs = client.get_metric_history(run.info.run_id, "epoch/val_top1")
    assert len(epochs) == cfg.optim.epochs
    assert epochs[-1].value == pytest.approx(tdn_and_tsn["tdn"].metrics["val_top1"])
    for name in ("train/loss", "train/lr", "train/samples_per_s", "train/data_wait_frac", "epoch/val_top5"):
        assert client.get_metric_history(run.info.run_id, name), name
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "per_class_accuracy.csv", "checkpoint"} <= artifacts
    csv = Path(client.download_artifacts(run.info.run_id, "per_class_accuracy.csv")).read_text().splitlines()
    assert csv[0] == "class_index,class_name,samples,top1,top5" and len(csv) == 1 + cfg.model.num_classes
    version = client.get_model_version_by_alias(cfg.tracking.registered_model, "test")
    assert version.run_id == run.info.run_id
    assert float(version.tags["val_top1"]) == pytest.approx(tdn_and_tsn["tdn"].metrics["val_top1"], abs=1e-5)

    from tdn.tracking.registry import load_registered_model

    model, ckpt = load_registered_model(f"models:/{cfg.tracking.registered_model}@test", mlflow_server.uri)
    final = ckpt_of(tdn_and_tsn["tdn"].checkpoint)
    assert ckpt["epoch"] == final["epoch"] == cfg.optim.epochs
    for key, value in final["model"].items():
        assert torch.equal(model.state_dict()[key], value), key


def test_training_completes_while_mlflow_is_down(tdn_and_tsn, mlflow_server):
    outage = tdn_and_tsn["outage"]
    assert hasattr(outage, "stopped_at") and hasattr(outage, "restarted_at"), "the server was never stopped"
    result = tdn_and_tsn["tsn"]
    assert result.error is None and result.metrics["epoch"] == tdn_and_tsn["cfg"].optim.epochs
    client, run = mlflow_run(mlflow_server.uri, tdn_and_tsn["cfg"].tracking.experiment, "tsn-synthetic")
    assert run is not None and run.info.status == "FINISHED"
    # every epoch's metrics arrived, including those logged while the server was down
    history = client.get_metric_history(run.info.run_id, "epoch/epoch")
    assert sorted(m.value for m in history) == list(range(1, tdn_and_tsn["cfg"].optim.epochs + 1))


def test_worker_crash_resumes_and_resume_is_reproducible(ray_cluster, synthetic_shards, tmp_path, capsys):
    """A worker dies mid-epoch 2; the run restarts from the epoch-1 checkpoint and completes. Then the CLI
    resumes from that same checkpoint: epoch 2 comes out bit for bit the same (a cheap TSN at 32 px)."""
    marker = tmp_path / "crashed"
    fast = ("model.variant=tsn", "loader.input_size=32", "loader.batch_size=8", "optim.epochs=2",
            "data.val_split=")  # fmt: skip
    cfg = tiny(synthetic_shards, tmp_path, *fast, "run.max_failures=1", "run.crash_once_at_step=11",
               f"run.crash_marker={marker}")  # fmt: skip
    steps_per_epoch = 8  # ceil(120 videos / (8 per worker x 2 workers))
    scratch = ("tdn-train-*", "checkpoint_tmp_*", "tdn-ckpt-*")  # workers' scratch copies and Ray's
    before = {p for pattern in scratch for p in Path(tempfile.gettempdir()).glob(pattern)}
    result = fit(cfg)
    assert result.error is None
    assert marker.exists() and "step 11" in marker.read_text(), "the fault was never injected"
    left = {p for pattern in scratch for p in Path(tempfile.gettempdir()).glob(pattern)} - before
    assert not left, f"the killed and the restarted worker group left {sorted(left)}"
    final = ckpt_of(result.checkpoint)
    assert final["format"] == "tdn-checkpoint/1" and set(final["rng"]) >= {"torch", "numpy", "python"}
    assert final["epoch"] == 2 and final["step"] == 2 * steps_per_epoch
    assert result.metrics["epoch"] == 2

    from jobs.train import main

    epoch1 = next(c for c, m in result.best_checkpoints if m["epoch"] == 1)
    flags = [f"--{item.replace('=', ' ', 1)}" for item in fast]
    argv = [
        "--config",
        str(RECIPE),
        "--data.shards",
        str(synthetic_shards),
        "--run.storage_path",
        str(tmp_path / "ray"),
        "--tracking.enabled",
        "false",
        "--workers",
        "2",
        "--resume",
        epoch1.path,
    ]
    code = main(argv + [part for flag in flags for part in flag.split(" ", 1)])
    assert code == 0
    summary = next(line for line in capsys.readouterr().out.splitlines() if line.startswith('{"metrics"'))
    resumed_path = json.loads(summary)["checkpoint"]
    resumed = torch.load(Path(resumed_path) / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert resumed["epoch"] == 2 and resumed["step"] == final["step"]
    for key, value in final["model"].items():
        assert torch.equal(resumed["model"][key], value), f"{key} differs after resuming"
