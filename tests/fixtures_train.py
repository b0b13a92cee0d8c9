"""Shards of the synthetic motion dataset for training and evaluation tests, made by the real pipeline.

``synthetic_shards`` (session-scoped, read-only) runs what a user runs: ``pipeline.synthetic.generate`` writes H.264
videos in the UCF101 layout (split 1 lists), then ``pipeline.shards.job.run_shard_job`` on the test Ray cluster
writes ``train/`` (2 pre-sampled views per video) and ``test/`` (1 centre view) shards of 4-segment clips.

Its four classes are pan left / right and zoom in / out: single frames look alike in every class
(pipeline/synthetic/render.py), so only a model that sees motion beats chance -- the training tests use that
to tell TDN from TSN. (Of the motions tried, whole-frame pans and zooms are the ones a tiny TDN learns within
a CPU test's budget; object translations need many more steps.)

``quickstart_run`` (session-scoped, read-only) is one ``make quickstart`` run at its defaults, tracked on the
session's MLflow server: the one TDN-vs-TSN training the tests share.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.datasets import DatasetConfig
from pipeline.shards.job import ShardConfig, SplitShardConfig, run_shard_job
from pipeline.synthetic.generate import SyntheticConfig, generate
from tests.built_once import built_once

REPO = Path(__file__).resolve().parent.parent
MOTIONS = ("pan_left", "pan_right", "zoom_in", "zoom_out")
NUM_SEGMENTS = 4

# 44 videos per class over UCF101's 25 groups: split 1 tests on groups 1-7 -> 30 train + 14 test per class.
SYNTHETIC_MOTION = SyntheticConfig(
    classes=len(MOTIONS),
    motions=MOTIONS,
    videos_per_class=44,
    seed=7,
    codec="h264",
    layout="ucf101",
    min_frames=28,
    max_frames=44,
    sizes=((64, 64),),
    fps=(25,),
)


def make_synthetic_shards(root: Path) -> Path:
    """Videos under ``root/videos``, shards under ``root/shards`` (returned); needs a connected Ray."""
    generate(SYNTHETIC_MOTION, root / "videos")
    out = root / "shards"
    summary = run_shard_job(
        ShardConfig(
            dataset=DatasetConfig(format="ucf101", root=str(root / "videos"), split_number=1),
            output=str(out),
            splits=["train", "test"],
            num_segments=NUM_SEGMENTS,
            train=SplitShardConfig("train", 2, 64),
            test=SplitShardConfig("centre", 1, 64),
            videos_per_shard=32,
            seed=7,
            progress_interval_s=60.0,
        )
    )
    if not summary.ok:
        raise RuntimeError(f"shard job failed: {summary}")
    return out


@pytest.fixture(scope="session")
def synthetic_shards(ray_cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shard root with ``train/`` (120 videos x 2 views) and ``test/`` (56 videos), 4 classes, 4 segments,
    64x64 frames. Read-only; built once for both workers of ``make test`` (176 encoded videos and a shard job
    on the first asking worker's test cluster: 22 s with the cluster's start-up, alone on 2 cores)."""
    return built_once(tmp_path_factory, "synthetic_shards", make_synthetic_shards)


@dataclass(frozen=True)
class QuickstartRun:
    """One ``python -m jobs.quickstart`` run, shared by every test that needs a trained TDN and TSN: the
    quickstart's own test and the training tests that read its MLflow runs, all in tests/test_quickstart.py
    (one file: one xdist worker, tests/tiers.py). Read-only: a test that would change it makes its own."""

    workdir: Path
    tracking_uri: str  # the session's mlflow server: the runs, the registered models, the evaluations
    args: tuple[str, ...]  # the quickstart's arguments, for a re-run
    output: str  # stdout and stderr of the run


def run_quickstart(args: Sequence[str]) -> str:
    """``python -m jobs.quickstart ARGS`` from the repository root, as a user runs it; its output."""
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # the quickstart starts its own local Ray, not the tests' cluster
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.quickstart", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return out


@pytest.fixture(scope="session")
def quickstart_run(mlflow_server, tmp_path_factory: pytest.TempPathFactory) -> QuickstartRun:
    workdir = tmp_path_factory.mktemp("quickstart") / "qs"
    args = ("--workdir", str(workdir), "--tracking-uri", mlflow_server.uri)
    return QuickstartRun(workdir, mlflow_server.uri, args, run_quickstart(args))
