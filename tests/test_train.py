"""Training end to end on a real two-node Ray cluster (2 CPU workers, DDP over gloo), real MLflow server.

The model is the tiny synthetic recipe (jobs/configs/synthetic_tiny.yaml: ResNet-18 at width 0.25, 56 px,
4 segments) on ``synthetic_shards``: four classes that differ only in the direction of motion.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import torch

from pipeline.config import load_config
from tdn.train import TrainConfig

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "jobs" / "configs" / "synthetic_tiny.yaml"


def tiny(shards: Path, tmp_path: Path, *overrides: str) -> TrainConfig:
    return load_config(TrainConfig, RECIPE, [
        f"data.shards={shards}", f"run.storage_path={tmp_path / 'ray'}", "tracking.enabled=false", *overrides,
    ])  # fmt: skip


def fit(cfg: TrainConfig):
    from tdn.trainer import fit as trainer_fit

    return trainer_fit(cfg)


def load_ckpt(result) -> dict:
    path = Path(result.checkpoint.path) / "checkpoint.pt"
    return torch.load(path, map_location="cpu", weights_only=True)


def test_worker_crash_resumes_from_last_checkpoint(ray_cluster, synthetic_shards, tmp_path):
    marker = tmp_path / "crashed"
    cfg = tiny(synthetic_shards, tmp_path, "optim.epochs=3", "data.val_split=", "run.max_failures=1",
               "run.crash_once_at_step=13", f"run.crash_marker={marker}")  # fmt: skip
    steps_per_epoch = 8  # 64 videos / (8 x 2 workers)
    result = fit(cfg)
    assert result.error is None
    assert marker.exists(), "the fault was never injected"
    assert "step 13" in marker.read_text()
    ckpt = load_ckpt(result)
    assert ckpt["epoch"] == 3 and ckpt["step"] == 3 * steps_per_epoch
    assert ckpt["format"] == "tdn-checkpoint/1" and set(ckpt["rng"]) >= {"torch", "numpy", "python"}
    assert result.metrics["epoch"] == 3
