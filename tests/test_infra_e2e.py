"""End to end on the local cluster (`python -m infra.local`): shard, train and evaluate submitted with
`ray job submit`, the way docs/cluster.md runs them on a real cluster, with the data in S3 (moto) and the runs,
registered model and artifacts in the cluster's MLflow server (artifacts proxied into the same bucket).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local import LocalClusterConfig, down, leftover_processes, up
from pipeline.config import load_config
from pipeline.shards.contract import ShardIndex
from tdn.training.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).with_name("ray"))
BUCKET = "tdn-e2e"


@pytest.fixture
def local_cluster(tmp_path: Path) -> Iterator[dict[str, str]]:
    state = up(LocalClusterConfig(dir=str(tmp_path / "cluster"), head_cpus=2, worker_cpus=2, bucket=BUCKET))
    try:
        yield state.env
    finally:
        stopped = down(state.dir)
        assert leftover_processes(stopped) == []


def submit(env: dict[str, str], *entrypoint: str) -> str:
    """`ray job submit` (waits for the job); returns its output, fails the test with it if the job failed."""
    client_env = dict(os.environ, **env)
    deadline = time.monotonic() + 60
    while True:
        result = subprocess.run(
            [RAY, "job", "submit", "--address", env["RAY_ADDRESS"], "--", *entrypoint],
            env=client_env, capture_output=True, text=True, timeout=900, cwd=ROOT,
        )  # fmt: skip
        log = result.stdout + result.stderr
        # The head's job agent may still be registering right after start-up.
        if "No available agent" not in log or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert result.returncode == 0 and "succeeded" in log, log[-5000:]
    return log


def s3_client(env: dict[str, str]):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def keys(env: dict[str, str], prefix: str) -> list[str]:
    pages = s3_client(env).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.mark.slow
def test_shard_train_evaluate_through_ray_job_submit(
    local_cluster: dict[str, str], synthetic_ucf101: Path, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    env = local_cluster
    s3 = s3_client(env)
    # The dataset goes where a cluster reads it from: the bucket.
    for path in synthetic_ucf101.rglob("*"):
        if path.is_file():
            s3.upload_file(
                str(path), BUCKET, f"datasets/ucf101/{path.relative_to(synthetic_ucf101).as_posix()}"
            )
    shards = f"s3://{BUCKET}/shards/ucf101"
    # The shards hold as many segments as the training preset's model reads; evaluation uses its input size.
    preset = "jobs/configs/synthetic_tiny.yaml"
    train_cfg = load_config(TrainConfig, ROOT / preset)
    segments = str(train_cfg.model.num_segments)
    short_side = str(max(64, train_cfg.loader.input_size))

    submit(
        env, "python", "jobs/shard.py", "--config", "jobs/configs/shard_ucf101.yaml",
        "--dataset.root", f"s3://{BUCKET}/datasets/ucf101",
        "--dataset.annotations", f"s3://{BUCKET}/datasets/ucf101/ucfTrainTestlist",
        "--output", shards, "--splits", "[train, test]", "--videos_per_shard", "8", "--num_segments", segments,
        "--train.short_side", short_side, "--test.short_side", short_side,
    )  # fmt: skip
    train_key, test_key = "shards/ucf101/train/index.json", "shards/ucf101/test/index.json"
    train_index = ShardIndex.from_json(s3.get_object(Bucket=BUCKET, Key=train_key)["Body"].read(), train_key)
    index = ShardIndex.from_json(s3.get_object(Bucket=BUCKET, Key=test_key)["Body"].read(), test_key)
    listed = (synthetic_ucf101 / "ucfTrainTestlist" / "testlist01.txt").read_text().split()
    assert index.num_videos == len(listed) and index.quarantined == 0
    assert len(index.classes) == 4
    for split in ("train", "test"):
        tars = [k for k in keys(env, f"shards/ucf101/{split}/") if k.endswith(".tar")]
        assert tars and all(k.rsplit("/", 1)[1].startswith("shard-") for k in tars), split

    submit(
        env, "python", "jobs/train.py", "--config", preset, "--model.num_classes", str(len(index.classes)),
        "--data.shards", shards, "--data.val_split", "test",
        "--run.storage_path", f"s3://{BUCKET}/ray-results", "--name", "e2e",
        "--workers", "2", "--optim.epochs", "1", "--tracking.registered_model", "e2e-tdn",
        "--tracking.export_model", "false",  # evaluation reads checkpoint.pt; the pt2 export: test_model_export
    )  # fmt: skip
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    (version,) = client.search_model_versions("name='e2e-tdn'")
    train_run = client.get_run(version.run_id)
    assert train_run.info.status == "FINISHED"
    assert "val/top1_pct" in train_run.data.metrics, train_run.data.metrics  # validated on the test split
    assert train_run.data.tags["tdn.train_index_checksum"] == train_index.checksum
    assert keys(env, "ray-results/"), "no Ray Train checkpoint in S3"

    submit(
        env, "python", "jobs/evaluate.py", "--model", f"models:/e2e-tdn/{version.version}",
        "--shards", f"{shards}/test", "--protocol", "ssv1x1", "--eval.input_size", str(train_cfg.loader.input_size),
        "--eval.short_side", short_side, "--replicas", "1", "--out", str(tmp_path / "results"),
    )  # fmt: skip
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.`tdn.kind` = 'evaluation'"
    )
    assert len(runs) == 1
    evaluation = runs[0]
    assert 0.0 <= evaluation.data.metrics["eval/top1_pct"] <= 100.0
    assert evaluation.data.tags["tdn.num_videos"] == str(index.num_videos)  # a counter: a tag, not a metric
    assert evaluation.data.tags["tdn.index_checksum"] == index.checksum
    assert (
        json.loads((tmp_path / "results" / "results.json").read_text())["top1_pct"]
        == evaluation.data.metrics["eval/top1_pct"]
    )
    # Artifacts of both runs went through the server into the bucket.
    artifacts = keys(env, "mlflow-artifacts/")
    for run in (train_run, evaluation):
        assert any(f"/{run.info.run_id}/" in k for k in artifacts), run.info.run_id
