"""TDN (Temporal Difference Networks, CVPR 2021): model, baselines, checkpoints and FLOPs.

Names are imported on first use so that ``python -m tdn.flops`` / ``python -m tdn.checkpoint`` do not
import their own module twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tdn.checkpoint import (
        CheckpointError,
        load_checkpoint,
        load_imagenet_weights,
        load_model_checkpoint,
        load_official_checkpoint,
        save_checkpoint,
    )
    from tdn.flops import FlopsReport, count_flops
    from tdn.model import ModelConfig, TDNNet, Variant, build_model, build_model_from_config

_HOME = {
    "CheckpointError": "tdn.checkpoint",
    "load_checkpoint": "tdn.checkpoint",
    "load_imagenet_weights": "tdn.checkpoint",
    "load_model_checkpoint": "tdn.checkpoint",
    "load_official_checkpoint": "tdn.checkpoint",
    "save_checkpoint": "tdn.checkpoint",
    "FlopsReport": "tdn.flops",
    "count_flops": "tdn.flops",
    "ModelConfig": "tdn.model",
    "TDNNet": "tdn.model",
    "Variant": "tdn.model",
    "build_model": "tdn.model",
    "build_model_from_config": "tdn.model",
}

__all__ = [
    "CheckpointError",
    "FlopsReport",
    "ModelConfig",
    "TDNNet",
    "Variant",
    "build_model",
    "build_model_from_config",
    "count_flops",
    "load_checkpoint",
    "load_imagenet_weights",
    "load_model_checkpoint",
    "load_official_checkpoint",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'tdn' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)
