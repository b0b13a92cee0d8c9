"""Shared fixtures: real Ray, MLflow and S3 services on this machine, and generated datasets.

Ray's token auth is switched off explicitly for every process the tests start (see shared notes: a cluster
started by ray.init() otherwise enables it and clients joining by address fail).
"""

from __future__ import annotations

import os

os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
# Ray Train's controller polls its workers every 2 s, and each ray.train.report waits for the next poll: an
# epoch of the tests' tiny recipes takes about as long as one wait. 0.25 s keeps the polling cheap and takes
# most of that wait out of every training run the tests start (the jobs they launch inherit it).
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
# One torch/OpenMP thread per process on pytest-xdist workers (make test: two workers on 2 cores, and every job,
# Ray worker and server they start shares those cores): a second thread mostly spins waiting for the other.
# Measured on the unit tier (2026-12-07, 2-core machine): two workers 105 s -> 78 s (user CPU 183 s -> 129 s);
# serially (make test-fast) one thread was slower, 115 s -> 130 s, so it is left alone there. Set before
# anything imports torch (OpenMP reads it once; xdist sets PYTEST_XDIST_WORKER before conftest loads); the
# processes the tests start inherit it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
# Keep tests from spending time on Ray Data's progress bars.
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

import tempfile  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.services import MlflowServer, S3Server  # noqa: E402

pytest_plugins = [
    "tests.tiers",
    "tests.fixtures_data",
    "tests.fixtures_train",
    "tests.object_model",
    "pytester",
]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[object]:
    """A real two-node Ray cluster on this machine; the test process is connected as its driver."""
    import ray
    from ray.cluster_utils import Cluster

    # Credentials are never forwarded to Ray workers (pipeline/forwarded_env.py): like a real node, this
    # cluster's nodes read them from a 0600 file of their own (moto takes any key).
    creds = Path(tempfile.mkdtemp(prefix="tdn-test-aws-")) / "credentials"
    creds.write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    creds.chmod(0o600)
    os.environ.setdefault("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    try:
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
