"""No secret in Ray's logs or the outputs (issue 14, item 6): credentials are never forwarded through
``runtime_env`` environment variables or remote arguments (pipeline/forwarded_env.py).

Fake AWS keys, a session token and MLflow credentials are set in the driver's environment; a small shard job and
a one-epoch training run on the test cluster; then every file under the Ray session folder (its logs, including
``runtime_env_agent.log`` and Ray Data's) and every output folder is searched for the values.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config
from pipeline.datasets import DatasetConfig
from pipeline.forwarded_env import FORWARDED_ENV, SECRET_ENV, runtime_env
from pipeline.shards.job import ShardConfig, SplitShardConfig, run_shard_job
from tdn.training.config import TrainConfig
from tests.train_runs import RECIPE, fit, tiny

pytestmark = pytest.mark.integration

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKESECRET14C0001",
    "AWS_SECRET_ACCESS_KEY": "fake-secret-access-key-14c-0002",
    "AWS_SESSION_TOKEN": "fake-session-token-14c-0003",
    "MLFLOW_TRACKING_USERNAME": "fake-user-14c-0004",
    "MLFLOW_TRACKING_PASSWORD": "fake-password-14c-0005",
}


def files_holding(root: Path, values: list[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            hits += [f"{path}: {v.decode()}" for v in values if v in data]
    return hits


def test_secrets_never_reach_ray_logs_or_outputs(
    ray_cluster, synthetic_ucf101, synthetic_shards, tmp_path, monkeypatch
):
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    summary = run_shard_job(
        ShardConfig(
            dataset=DatasetConfig(format="ucf101", root=str(synthetic_ucf101), split_number=1),
            output=str(tmp_path / "shards"),
            splits=["test"],
            num_segments=4,
            test=SplitShardConfig("centre", 1, 32),
            videos_per_shard=8,
            max_videos_per_split=16,
            progress_interval_s=60.0,
        )
    )
    assert summary.ok
    result = fit(
        tiny(
            synthetic_shards,
            tmp_path,
            "model.variant=tsn",
            "loader.input_size=32",
            "loader.batch_size=16",
            "optim.epochs=1",
            "data.val_split=",
            "run.name=secrets",
        )
    )
    assert result.error is None

    session = Path(ray_cluster.head_node.get_session_dir_path())
    assert (session / "logs").is_dir()
    values = [v.encode() for v in SECRETS.values()]
    leaks = files_holding(session, values) + files_holding(tmp_path, values)
    assert not leaks, f"secrets written in plain text: {leaks[:5]}"


def test_a_shard_config_may_not_forward_a_secret(tmp_path):
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY is a secret"):
        ShardConfig(
            dataset=DatasetConfig(format="ucf101", root=str(tmp_path)),
            output=str(tmp_path / "o"),
            forward_env=["AWS_ENDPOINT_URL", "AWS_SECRET_ACCESS_KEY"],
        )


def test_one_forwarded_list_for_every_job_and_never_a_secret(tmp_path, monkeypatch):
    """runtime_env() carries FORWARDED_ENV's set variables and a job's own values, never a secret; training's
    workers and the evaluation replicas get exactly that (the shard job: test above)."""
    from tdn.evaluation.replica_pool import _forward_env
    from tdn.training.launcher import worker_env

    for name in FORWARDED_ENV:
        monkeypatch.delenv(name, raising=False)
    assert runtime_env() == {} and _forward_env() == {}
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    uri = "http://mlflow.example:5000"
    env = runtime_env({"MLFLOW_TRACKING_URI": uri, "AWS_SECRET_ACCESS_KEY": "from-a-config"})
    assert env == {
        "env_vars": {
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
            "MLFLOW_TRACKING_URI": uri,
        }
    }
    assert not SECRET_ENV & set(FORWARDED_ENV)
    cfg = load_config(TrainConfig, RECIPE, [f"data.shards={tmp_path}", f"tracking.uri={uri}"])
    assert worker_env(cfg) == env
    assert _forward_env() == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    }
