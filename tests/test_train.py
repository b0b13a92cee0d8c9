"""Training end to end on a real two-node Ray cluster (2 CPU workers, DDP over gloo) and a real MLflow server.

The model is the tiny synthetic recipe (jobs/configs/synthetic_tiny.yaml: ResNet-18 at width 0.25, 56 px,
4 segments) on ``synthetic_shards``: four classes that differ only in motion (pan left / right, zoom in / out),
so a frame-level model (TSN) cannot beat chance while TDN can.
"""

from __future__ import annotations

import getpass
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
    tdn_cfg = tiny(synthetic_shards, tmp, *common, "run.name=tdn-synthetic", "tracking.registered_alias=test",
                   "tracking.system_metrics_interval_s=1", "tracking.export_model=false")  # fmt: skip
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
        f"TDN val top-1 {tdn['val/top1_pct']:.1f}% (train loss {tdn['train/epoch_loss']:.3f}), "
        f"TSN val top-1 {tsn['val/top1_pct']:.1f}% (train loss {tsn['train/epoch_loss']:.3f})"
    )
    assert tdn["epoch"] == tdn_and_tsn["cfg"].optim.epochs
    assert tdn["val/top1_pct"] >= 50.0, "TDN should end far above chance (25%)"
    assert tdn["val/top1_pct"] >= tsn["val/top1_pct"] + 20.0
    assert tsn["val/top1_pct"] <= 45.0, "frames alone carry no class information in this dataset"
    assert tdn["best/val_top1_pct"] >= tdn["val/top1_pct"]


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
    # lineage (issue 15): both splits as dataset inputs, the source tags taken on the driver
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["training", "validation"]
    train_input, val_input = inputs["training"], inputs["validation"]
    assert (train_input.name, train_input.digest) == (f"{index.dataset}/train", index.checksum[:36])
    assert json.loads(inputs["training"].source) == {"uri": str(Path(cfg.data.shards) / "train")}
    val = read_index(str(Path(cfg.data.shards) / cfg.data.val_split))
    assert (val_input.name, val_input.digest) == (f"{val.dataset}/{val.split}", val.checksum[:36])
    assert run.data.tags["mlflow.user"] == getpass.getuser()
    assert run.data.tags["mlflow.source.git.commit"] == run.data.tags["tdn.git_commit"].removesuffix("-dirty")
    # one metric namespace (issue 15): sections train/ val/ best/ system/, percentages, no counters
    run_id = run.info.run_id
    sections = {key.split("/", 1)[0] for key in run.data.metrics}
    assert sections == {"train", "val", "best", "system"}, sorted(run.data.metrics)
    epochs = client.get_metric_history(run_id, "val/top1_pct")
    assert len(epochs) == cfg.optim.epochs
    assert epochs[-1].value == pytest.approx(tdn_and_tsn["tdn"].metrics["val/top1_pct"])
    assert epochs[-1].step == tdn_and_tsn["tdn"].metrics["step"]  # x-axis: the global step
    for name in ("train/loss", "train/lr", "train/samples_per_s", "train/data_wait_pct", "val/top5_pct",
                 "train/epoch_loss", "train/epoch_top1_pct", "train/epoch_time_s", "val/loss"):  # fmt: skip
        assert client.get_metric_history(run_id, name), name
    assert run.data.tags["tdn.val_samples"] == str(val.num_samples)
    # best and last: best/val_top1_pct each time a new best appeared; the best is registered
    best = client.get_metric_history(run_id, "best/val_top1_pct")
    val_curve = [m.value for m in sorted(epochs, key=lambda m: m.step)]
    new_bests = [v for i, v in enumerate(val_curve) if v >= max(val_curve[:i], default=-1.0)]  # ties too
    assert [m.value for m in sorted(best, key=lambda m: m.step)] == pytest.approx(new_bests)
    best_step = max(best, key=lambda m: m.step).step
    # system metrics of the node, sampled every second (tracking.system_metrics_interval_s=1)
    system = [key for key in run.data.metrics if key.startswith("system/")]
    assert any(key.endswith("/cpu_utilization_percentage") for key in system), system
    assert any(key.endswith("/system_memory_usage_megabytes") for key in system), system
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "per_class_accuracy.csv", "checkpoint", "metrics.csv", "curves.png"} <= artifacts
    csv = Path(client.download_artifacts(run_id, "per_class_accuracy.csv")).read_text().splitlines()
    assert csv[0] == "class_index,class_name,samples,top1_pct,top5_pct"
    assert len(csv) == 1 + cfg.model.num_classes
    history = Path(client.download_artifacts(run_id, "metrics.csv")).read_text().splitlines()
    assert len(history) == 1 + cfg.optim.epochs
    version = client.get_model_version_by_alias(cfg.tracking.registered_model, "test")
    assert version.run_id == run_id
    assert float(version.tags["val_top1_pct"]) == pytest.approx(max(val_curve), abs=1e-3)

    from tdn.tracking.registry import load_registered_model

    model, ckpt = load_registered_model(f"models:/{cfg.tracking.registered_model}@test", mlflow_server.uri)
    assert ckpt["step"] == best_step and ckpt["best"]["score"] == pytest.approx(max(val_curve))
    # Ray kept the best (checkpoint.keep=1) and the last, in folders named by epoch
    last = tdn_and_tsn["tdn"].checkpoint
    run_dir = Path(last.path).parent
    kept = sorted(p.name for p in run_dir.iterdir() if p.name.startswith("epoch_"))
    assert kept == sorted({f"epoch_{ckpt['epoch']:04d}", f"epoch_{cfg.optim.epochs:04d}"})
    assert Path(last.path).name == f"epoch_{cfg.optim.epochs:04d}"
    stored_best = torch.load(run_dir / f"epoch_{ckpt['epoch']:04d}" / "checkpoint.pt", weights_only=True)
    for key, value in stored_best["model"].items():
        assert torch.equal(model.state_dict()[key], value), key


def test_training_completes_while_mlflow_is_down(tdn_and_tsn, mlflow_server):
    outage = tdn_and_tsn["outage"]
    assert hasattr(outage, "stopped_at") and hasattr(outage, "restarted_at"), "the server was never stopped"
    result = tdn_and_tsn["tsn"]
    assert result.error is None and result.metrics["epoch"] == tdn_and_tsn["cfg"].optim.epochs
    client, run = mlflow_run(mlflow_server.uri, tdn_and_tsn["cfg"].tracking.experiment, "tsn-synthetic")
    assert run is not None and run.info.status == "FINISHED"
    # every epoch's metrics arrived, including those logged while the server was down
    history = client.get_metric_history(run.info.run_id, "train/epoch_loss")
    epochs, last_step = tdn_and_tsn["cfg"].optim.epochs, result.metrics["step"]
    assert sorted(m.step for m in history) == [last_step * k // epochs for k in range(1, epochs + 1)]
    assert "epoch/epoch" not in run.data.metrics and "epoch/step" not in run.data.metrics


def test_worker_crash_resumes_and_resume_is_reproducible(ray_cluster, synthetic_shards, tmp_path, capsys):
    """A worker dies mid-epoch 2; the run restarts from the epoch-1 checkpoint and completes. Then the CLI
    resumes from that same checkpoint: epoch 2 comes out bit for bit the same (a cheap TSN at 32 px)."""
    marker = tmp_path / "crashed"
    fast = ("model.variant=tsn", "loader.input_size=32", "loader.batch_size=8", "optim.epochs=2",
            "data.val_split=", "checkpoint.keep=2")  # fmt: skip
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
    assert result.metrics["epoch"] == 2 and Path(result.checkpoint.path).name == "epoch_0002"
    # the restarted group took epoch 1's row from the epoch-1 checkpoint: the history has both epochs
    assert [row["epoch"] for row in final["history"]] == [1, 2]
    assert final["best"] == {"monitor": "val/top1_pct", "mode": "max", "score": None, "epoch": 0}

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
    assert json.loads(summary)["best_checkpoint"] == resumed_path  # never validated: the last is the best
    resumed = torch.load(Path(resumed_path) / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert resumed["epoch"] == 2 and resumed["step"] == final["step"]
    for key, value in final["model"].items():
        assert torch.equal(resumed["model"][key], value), f"{key} differs after resuming"
