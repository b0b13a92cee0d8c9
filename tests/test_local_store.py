"""A local (sqlite) MLflow store keeps its artifacts beside its database, whichever process writes them.

Ray Train workers run in a folder of Ray's session (under /tmp/ray): before, the rank-0 worker created the
experiment there, so checkpoints, config.yaml and the registered model's files landed under /tmp/ray/session_*
and ``models:/name@alias`` broke after a reboot.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.config import load_config
from tdn.tracking.mlflow_store import get_or_create_experiment, tracking_client
from tdn.training.config import TrainConfig

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "jobs" / "configs" / "synthetic_tiny.yaml"


def _local(location: str) -> Path:
    """A local artifact location (a path or a file: URI) as a resolved path."""
    from mlflow.utils.file_utils import local_file_uri_to_path
    from mlflow.utils.uri import is_local_uri

    assert is_local_uri(location), location
    return Path(local_file_uri_to_path(location)).resolve()


def test_experiment_made_elsewhere_keeps_artifacts_beside_the_database(tmp_path, monkeypatch):
    """Whatever the working directory of the process that creates the experiment (a Ray worker's)."""
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    elsewhere = tmp_path / "worker_cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    client = tracking_client(uri)
    exp_id = get_or_create_experiment(client, "where/are my files?")
    location = _local(client.get_experiment(exp_id).artifact_location)
    assert location.is_relative_to(store.resolve()), location
    assert get_or_create_experiment(client, "where/are my files?") == exp_id
    # a second experiment gets its own folder
    other = _local(client.get_experiment(get_or_create_experiment(client, "other")).artifact_location)
    assert other != location and other.is_relative_to(store.resolve())
    assert not any(elsewhere.iterdir()), list(elsewhere.iterdir())


@pytest.mark.integration
def test_training_artifacts_and_registered_model_live_beside_the_store(
    ray_cluster, synthetic_shards, tmp_path
):
    """One cheap training epoch (TSN, 32 px, 1 worker) with the default kind of store: a sqlite file."""
    from tdn.training.launcher import fit

    store = tmp_path / "store"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    cfg = load_config(
        TrainConfig,
        RECIPE,
        [
            f"data.shards={synthetic_shards}",
            f"run.storage_path={tmp_path / 'ray'}",
            "run.name=artifact-home",
            "model.variant=tsn",
            "loader.input_size=32",
            "loader.batch_size=16",
            "optim.epochs=1",
            "data.val_split=",
            "run.workers=1",
            "tracking.enabled=true",
            f"tracking.uri={uri}",
            "tracking.registered_model=home",
            "tracking.registered_alias=here",
            "tracking.export_model=false",
        ],
    )
    result = fit(cfg)
    assert result.error is None

    client = tracking_client(uri)
    version = client.get_model_version_by_alias("home", "here")
    run = client.get_run(version.run_id)
    exp = client.get_experiment(run.info.experiment_id)
    model = client.get_logged_model(version.model_id or version.source.removeprefix("models:/"))
    home = store.resolve()
    for what, location in (
        ("experiment", exp.artifact_location),
        ("run", run.info.artifact_uri),
        ("logged model", model.artifact_location),
    ):
        assert _local(location).is_relative_to(home), f"{what} artifacts at {location}, not beside {home}"
    assert (_local(model.artifact_location) / "checkpoint.pt").is_file()
    assert (_local(run.info.artifact_uri) / "config.yaml").is_file()
    assert (_local(run.info.artifact_uri) / "checkpoint" / "checkpoint.pt").is_file()
    # nothing of the run under Ray's session folder
    session = Path(ray_cluster.head_node.get_session_dir_path())  # type: ignore[attr-defined]
    strays = [os.path.join(d, f) for d, _, files in os.walk(session) for f in files if f == "checkpoint.pt"]
    assert not strays, strays
