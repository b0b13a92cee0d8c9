"""Launching the tiny training recipe in tests (tests/test_train.py, test_train_seed.py, test_secrets.py).

The recipe (jobs/configs/synthetic_tiny.yaml: ResNet-18 at width 0.25, 56 px, 4 segments) trains on
``synthetic_shards`` (tests/fixtures_train.py) with MLflow off unless a test turns it on.

    result = fit(tiny(synthetic_shards, tmp_path, "model.variant=tsn", "optim.epochs=1"))
    weights = ckpt_of(result.checkpoint)["model"]
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.config import load_config
from tdn.training.config import TrainConfig

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "jobs" / "configs" / "synthetic_tiny.yaml"


def tiny(shards: Path, tmp_path: Path, *overrides: str) -> TrainConfig:
    return load_config(
        TrainConfig,
        RECIPE,
        [
            f"data.shards={shards}",
            f"run.storage_path={tmp_path / 'ray'}",
            "tracking.enabled=false",
            *overrides,
        ],
    )


def fit(cfg: TrainConfig):
    from tdn.training.launcher import fit as trainer_fit

    return trainer_fit(cfg)


def ckpt_of(checkpoint) -> dict:
    return torch.load(Path(checkpoint.path) / "checkpoint.pt", map_location="cpu", weights_only=True)
