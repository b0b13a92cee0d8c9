"""The one-machine development cluster (`python -m infra.local`): every service answers, and `down` (or a
failed `up`) leaves none of the processes it started behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from infra.local import ClusterStartError, LocalClusterConfig, leftover_processes, read_env, up
from infra.local.processes import is_alive

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "infra.local", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_local_cluster_up_serves_everything_and_down_leaves_nothing(tmp_path: Path) -> None:
    import boto3
    import mlflow
    import ray
    from ray.job_submission import JobStatus, JobSubmissionClient

    directory = tmp_path / "cluster"
    started = run_cli("up", "--dir", str(directory), "--head-cpus", "1", "--worker-cpus", "1")
    state_path = directory / "state.json"
    try:
        assert started.returncode == 0, started.stderr
        state = json.loads(state_path.read_text())
        env = read_env(directory)
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
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=env["TDN_BUCKET"]).get("Contents", [])]
        assert any(k.endswith(f"{run.info.run_id}/artifacts/note.txt") for k in keys), keys

        # A second `up` on a running cluster refuses and starts nothing.
        with pytest.raises(ClusterStartError, match="still running"):
            up(LocalClusterConfig(dir=str(directory)))
        assert json.loads(state_path.read_text())["services"] == state["services"]
    finally:
        stopped = run_cli("down", "--dir", str(directory))
        mlflow.set_tracking_uri(None)

    assert stopped.returncode == 0, stopped.stderr
    leaders = [s["pid"] for s in state["services"].values()]
    assert leftover_processes(leaders) == []
    assert not any(is_alive(pid) for pid in leaders)
    assert not state_path.exists() and not (directory / "env.sh").exists()
    if state["ray_temp_dir_owned"]:
        assert not os.path.exists(state["ray_temp_dir"])
    # `down` again is harmless.
    assert run_cli("down", "--dir", str(directory)).returncode == 0


@pytest.mark.slow
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
