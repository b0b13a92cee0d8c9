"""No secret in Ray's logs or the outputs (issue 14, item 6): credentials are never forwarded through
``runtime_env`` environment variables or remote arguments (pipeline/forwarded_env.py).

Fake AWS keys, a session token and MLflow credentials are set in the driver's environment; a small shard job and
a one-epoch training run on the test cluster; then every file under the Ray session folder (its logs, including
``runtime_env_agent.log`` and Ray Data's) and every output folder is searched for the values.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError
from pipeline.datasets import DatasetConfig
from pipeline.shards.job import ShardConfig, SplitShardConfig, run_shard_job
from tests.test_train import fit, tiny

pytestmark = pytest.mark.slow

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


def test_secrets_never_reach_ray_logs_or_outputs(ray_cluster, synthetic_ucf101, synthetic_shards, tmp_path,
                                                 monkeypatch):  # fmt: skip
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    summary = run_shard_job(ShardConfig(
        dataset=DatasetConfig(format="ucf101", root=str(synthetic_ucf101), split_number=1),
        output=str(tmp_path / "shards"), splits=["test"], num_segments=4,
        test=SplitShardConfig("centre", 1, 32), videos_per_shard=8, max_videos_per_split=16,
        progress_interval_s=60.0,
    ))  # fmt: skip
    assert summary.ok
    result = fit(tiny(synthetic_shards, tmp_path, "model.variant=tsn", "loader.input_size=32",
                      "loader.batch_size=16", "optim.epochs=1", "data.val_split=", "run.name=secrets"))  # fmt: skip
    assert result.error is None

    session = Path(ray_cluster.head_node.get_session_dir_path())
    assert (session / "logs").is_dir()
    values = [v.encode() for v in SECRETS.values()]
    leaks = files_holding(session, values) + files_holding(tmp_path, values)
    assert not leaks, f"secrets written in plain text: {leaks[:5]}"


def test_a_shard_config_may_not_forward_a_secret(tmp_path):
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY is a secret"):
        ShardConfig(dataset=DatasetConfig(format="ucf101", root=str(tmp_path)), output=str(tmp_path / "o"),
                    forward_env=["AWS_ENDPOINT_URL", "AWS_SECRET_ACCESS_KEY"])  # fmt: skip
