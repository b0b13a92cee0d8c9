"""`ray job submit --working-dir <checkout> -- python -m jobs.shard ...` to a local head started with
`ray start --head`, the way README.md and docs/cluster.md submit every job.

The head starts in a scratch folder, not in the checkout: the job's relative `--config jobs/configs/...` is
found only because Ray runs the entrypoint in its copy of the working dir (and puts that copy on the job's
PYTHONPATH, so `python -m jobs.shard` imports the uploaded code).

The head runs with ``--block`` in its own process group and its own --temp-dir, so the test stops exactly
that cluster (``ray stop`` would stop every Ray on the machine, other engineers' test clusters included).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.loading.shard_reading import read_index
from tests.services import free_port, wait_http

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture
def ray_head() -> Iterator[str]:
    """Dashboard address of a fresh one-node head (2 CPUs), torn down by killing its process group."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    temp_dir = tempfile.mkdtemp(prefix="rayh", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    dashboard = free_port()
    cmd = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={free_port()}",
        "--num-cpus=2",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={free_port()}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        # Every other fixed default port too: other clusters on this machine may hold them (the job agent
        # then cannot bind and job submission answers "No available agent").
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
    ]
    log = open(Path(temp_dir) / "head.log", "wb")  # noqa: SIM115 - closed below
    head = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=temp_dir
    )
    try:
        wait_http(f"http://127.0.0.1:{dashboard}/api/version", timeout=180, proc=head)
        yield f"http://127.0.0.1:{dashboard}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        log.close()


def _submit(address: str, entrypoint: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """`ray job submit --working-dir REPO` (waits for the job); retried while the head's job agent is still
    starting."""
    deadline = time.monotonic() + 60
    while True:
        result = subprocess.run(
            [
                str(BIN / "ray"),
                "job",
                "submit",
                "--address",
                address,
                "--working-dir",
                str(REPO),
                "--",
                *entrypoint,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if "No available agent" not in result.stderr + result.stdout or time.monotonic() > deadline:
            return result
        time.sleep(2)


@pytest.mark.integration
def test_ray_job_submit(ray_head, synthetic_ucf101, tmp_path):
    out = tmp_path / "shards"
    entrypoint = [
        sys.executable,
        "-m",
        "jobs.shard",
        "--config",
        "jobs/configs/shard_ucf101.yaml",  # relative: found in Ray's copy of the working dir
        "--dataset.root",
        str(synthetic_ucf101),
        "--dataset.annotations",
        str(synthetic_ucf101 / "ucfTrainTestlist"),
        "--output",
        str(out),
        "--max_videos_per_split",
        "6",
        "--videos_per_shard",
        "4",
        "--train.short_side",
        "48",
        "--test.short_side",
        "40",
    ]
    result = _submit(ray_head, entrypoint, dict(os.environ, RAY_AUTH_MODE="disabled"))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "succeeded" in log
    assert "[shard]" in log and "videos/s" in log
    for split, views in (("train", 2), ("test", 1)):
        index = read_index(str(out / split))
        assert index.num_videos == 6 and index.num_samples == 6 * views
        assert [s.name for s in index.shards] == ["shard-000000.tar", "shard-000001.tar"]
        assert (out / split / "quarantine.jsonl").read_text() == ""
