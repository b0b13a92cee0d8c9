"""Reproducible seeds (issue 14, item 4): model init, loader order, augmentation and dropout all draw from
``run.seed``, and the model is built after seeding. That two launches of the same config, seed and world size
give bitwise-identical final weights is checked end to end by tests/test_fault_matrix.py, whose every faulted
run must register the weights of its uninterrupted reference run."""

from __future__ import annotations

import torch

from tests.train_runs import RECIPE


def test_model_init_is_seeded_before_building(tmp_path):
    """What a worker's generator held before does not reach the model's initial weights."""
    from pipeline.config import load_config
    from tdn.model.networks import build_model_from_config
    from tdn.training.config import TrainConfig
    from tdn.training.rng import seed_model_init

    cfg = load_config(TrainConfig, RECIPE, [f"data.shards={tmp_path}"])
    weights = []
    for noise in (1, 2):
        torch.manual_seed(noise)  # a worker process that drew numbers before
        seed_model_init(cfg.run.seed)
        weights.append(build_model_from_config(cfg.model).state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
