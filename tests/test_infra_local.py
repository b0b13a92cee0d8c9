"""The one-machine development cluster (`python -m infra.local`), started once for this module: every
service answers; shard, train and evaluate run through `ray job submit` on it end to end; `down` (or a failed
`up`) leaves none of the processes it started behind.

The tests that share the cluster run in file order, the last one takes it down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.local import ClusterStartError, LocalClusterConfig, leftover_processes, read_env, up
from infra.local.processes import is_alive
from pipeline.config import load_config
from pipeline.shards.contract import ShardIndex
from tdn.training.config import TrainConfig

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).with_name("ray"))
BUCKET = "tdn-e2e"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "infra.local", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return json.loads(resp.read())


@dataclass(frozen=True)
class LocalCluster:
    directory: Path
    started: subprocess.CompletedProcess  # `up`'s exit status and output
    state: dict  # state.json as `up` wrote it
    env: dict[str, str]  # env.sh's variables


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    directory = tmp_path_factory.mktemp("local_cluster") / "cluster"
    started = run_cli(
        "up", "--dir", str(directory), "--head-cpus", "2", "--worker-cpus", "2", "--bucket", BUCKET
    )
    assert started.returncode == 0, started.stderr
    try:
        yield LocalCluster(
            directory, started, json.loads((directory / "state.json").read_text()), read_env(directory)
        )
    finally:
        run_cli("down", "--dir", str(directory))  # harmless after test_down_leaves_nothing


def test_local_cluster_up_serves_everything(local_cluster: LocalCluster, tmp_path: Path) -> None:
    import boto3
    import mlflow
    import ray
    from ray.job_submission import JobStatus, JobSubmissionClient

    directory, state, env = local_cluster.directory, local_cluster.state, local_cluster.env
    state_path = directory / "state.json"
    assert set(state["services"]) == {"s3", "mlflow", "ray-head", "ray-worker"}
    # env.sh exports exactly the recorded environment, and `env` prints it.
    printed = run_cli("env", "--dir", str(directory)).stdout
    for key, value in env.items():
        assert f"export {key}={value}\n" in printed
    assert env["RAY_ADDRESS"] == f"http://127.0.0.1:{state['ports']['dashboard']}"
    assert env["RAY_AUTH_MODE"] == "disabled"

    # Ray: the dashboard runs this Ray version and sees two alive nodes; a job runs through it and its
    # entrypoint's `python` is this interpreter (so the project imports) with the cluster's S3 env.
    assert get_json(env["RAY_ADDRESS"] + "/api/version")["ray_version"] == ray.__version__
    client = JobSubmissionClient(env["RAY_ADDRESS"])
    job = client.submit_job(
        entrypoint=(
            'python -c "import os, ray, pipeline; ray.init(); '
            "print('nodes', sum(n['Alive'] for n in ray.nodes()), os.environ['AWS_ENDPOINT_URL'])\""
        )
    )
    deadline = time.monotonic() + 600  # generous: the CI machine may be heavily loaded
    while client.get_job_status(job) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline, "job did not finish"
        time.sleep(0.5)
    logs = client.get_job_logs(job)
    assert client.get_job_status(job) == JobStatus.SUCCEEDED, logs
    assert f"nodes 2 {env['AWS_ENDPOINT_URL']}" in logs

    # S3: the bucket exists on the moto endpoint.
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    assert env["TDN_BUCKET"] in {b["Name"] for b in s3.list_buckets()["Buckets"]}

    # MLflow: healthy, and an artifact logged through the server lands in the bucket.
    with urllib.request.urlopen(env["MLFLOW_TRACKING_URI"] + "/health", timeout=60) as resp:
        assert resp.status == 200
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    note = tmp_path / "note.txt"
    note.write_text("through the server")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(note))
    stored = [o["Key"] for o in s3.list_objects_v2(Bucket=env["TDN_BUCKET"]).get("Contents", [])]
    assert any(k.endswith(f"{run.info.run_id}/artifacts/note.txt") for k in stored), stored

    # A second `up` on a running cluster refuses and starts nothing.
    with pytest.raises(ClusterStartError, match="still running"):
        up(LocalClusterConfig(dir=str(directory)))
    assert json.loads(state_path.read_text())["services"] == state["services"]
    mlflow.set_tracking_uri(None)


def submit(env: dict[str, str], *entrypoint: str) -> str:
    """`ray job submit` (waits for the job); returns its output, fails the test with it if the job failed."""
    client_env = dict(os.environ, **env)
    deadline = time.monotonic() + 60
    while True:
        result = subprocess.run(
            [RAY, "job", "submit", "--address", env["RAY_ADDRESS"], "--", *entrypoint],
            env=client_env,
            capture_output=True,
            text=True,
            timeout=900,
            cwd=ROOT,
        )
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


def test_shard_train_evaluate_through_ray_job_submit(
    local_cluster: LocalCluster, synthetic_ucf101: Path, tmp_path: Path
) -> None:
    """Shard, train and evaluate submitted with `ray job submit`, the way docs/cluster.md runs them on a real
    cluster, with the data in S3 (moto) and the runs, registered model and artifacts in the cluster's MLflow
    server (artifacts proxied into the same bucket)."""
    from mlflow import MlflowClient

    env = local_cluster.env
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
        env,
        "python",
        "-m",
        "jobs.shard",
        "--config",
        "jobs/configs/shard_ucf101.yaml",
        "--dataset.root",
        f"s3://{BUCKET}/datasets/ucf101",
        "--dataset.annotations",
        f"s3://{BUCKET}/datasets/ucf101/ucfTrainTestlist",
        "--output",
        shards,
        "--splits",
        "[train, test]",
        "--videos_per_shard",
        "8",
        "--num_segments",
        segments,
        "--train.short_side",
        short_side,
        "--test.short_side",
        short_side,
    )
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
        env,
        "python",
        "-m",
        "jobs.train",
        "--config",
        preset,
        "--model.num_classes",
        str(len(index.classes)),
        "--data.shards",
        shards,
        "--data.val_split",
        "test",
        "--run.storage_path",
        f"s3://{BUCKET}/ray-results",
        "--name",
        "e2e",
        "--workers",
        "2",
        "--optim.epochs",
        "1",
        "--tracking.registered_model",
        "e2e-tdn",
        "--tracking.export_model",
        "false",  # evaluation reads checkpoint.pt; the pt2 export: test_model_export
    )
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    (version,) = client.search_model_versions("name='e2e-tdn'")
    train_run = client.get_run(version.run_id)
    assert train_run.info.status == "FINISHED"
    assert "top1_pct/val" in train_run.data.metrics, train_run.data.metrics  # validated on the test split
    assert train_run.data.tags["tdn.train_index_checksum"] == train_index.checksum
    assert keys(env, "ray-results/"), "no Ray Train checkpoint in S3"

    submit(
        env,
        "python",
        "-m",
        "jobs.evaluate",
        "--model",
        f"models:/e2e-tdn/{version.version}",
        "--shards",
        f"{shards}/test",
        "--protocol",
        "ssv1x1",
        "--eval.input_size",
        str(train_cfg.loader.input_size),
        "--eval.short_side",
        short_side,
        "--replicas",
        "1",
        "--out",
        str(tmp_path / "results"),
    )
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


def test_down_leaves_nothing(local_cluster: LocalCluster) -> None:
    directory, state = local_cluster.directory, local_cluster.state
    stopped = run_cli("down", "--dir", str(directory))
    assert stopped.returncode == 0, stopped.stderr
    leaders = [s["pid"] for s in state["services"].values()]
    assert leftover_processes(leaders) == []
    assert not any(is_alive(pid) for pid in leaders)
    assert not (directory / "state.json").exists() and not (directory / "env.sh").exists()
    if state["ray_temp_dir_owned"]:
        assert not os.path.exists(state["ray_temp_dir"])
    # `down` again is harmless.
    assert run_cli("down", "--dir", str(directory)).returncode == 0


def test_failed_up_stops_what_it_had_started(tmp_path: Path) -> None:
    # The second Ray node cannot start (negative CPU count) after S3, MLflow and the head are already up.
    cfg = LocalClusterConfig(
        dir=str(tmp_path / "cluster"), head_cpus=1, worker_cpus=-1, startup_timeout_s=120
    )
    with pytest.raises(ClusterStartError, match="ray-worker exited during start-up") as info:
        up(cfg)
    assert len(info.value.stopped_sessions) == 4
    assert leftover_processes(info.value.stopped_sessions) == []
    assert not (tmp_path / "cluster" / "state.json").exists()
