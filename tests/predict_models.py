"""A random tiny model whose checkpoint carries its recipe, for the predict tests (test_predict.py,
test_predict_scale.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.config import config_to_dict
from pipeline.loading.config import LoaderConfig
from tdn.checkpoints.project import TrainingState, save_checkpoint
from tdn.model.networks import ModelConfig, build_model_from_config
from tdn.training.config import TrainConfig

CLASSES = ["alpha", "beta", "gamma"]
T, SIZE, SHORT = 4, 40, 48  # the tiny model's recipe: 4 segments, 40 px crops of frames at short side 48


def tiny_checkpoint(path: Path, variant: str = "tdn", seed: int = 0) -> str:
    """A random tiny model whose checkpoint records a training config (hence its recipe); the classifier
    scaled up so that the classes' probabilities differ visibly."""
    cfg = ModelConfig(
        arch="resnet18", num_classes=3, num_segments=T, width=0.25, dropout=0.0, variant=variant
    )
    torch.manual_seed(seed)
    model = build_model_from_config(cfg).eval()
    with torch.no_grad():
        model.fc.weight.normal_(0.0, 0.5)
    train = TrainConfig(model=cfg, loader=LoaderConfig(input_size=SIZE, eval_short_side=SHORT))
    save_checkpoint(str(path), model, cfg, CLASSES, TrainingState(train_config=config_to_dict(train)))
    return str(path)
