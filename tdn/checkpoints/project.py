"""The project's checkpoint format, and the strict loading every weights file goes through.

Project format (a dict, loadable with ``torch.load(weights_only=True)``; local paths or s3:// URIs):
    {"format": "tdn-checkpoint/1", "model_config": dict, "model": state_dict, "class_names": [...],
     "recipe": dict (recipe.py; absent in checkpoints written before it: recipe_of derives it),
     "optimizer", "scheduler", "epoch", "step", "rng", "train_config", "metrics"}   (last ones optional)

    save_checkpoint(uri, model, model_config, class_names, TrainingState, Recipe) --torch.save, atomic--> uri
    uri --load_checkpoint (format checked)--> dict --load_model_checkpoint--> (TDNNet, dict)

Every load is strict: a file that does not fit the model raises ``CheckpointError`` listing the missing keys,
the unexpected keys and the shape mismatches; nothing is loaded partially. Released TDN checkpoints:
tdn/checkpoints/official.py; ImageNet initialisation: tdn/checkpoints/imagenet.py.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline import storage
from pipeline.config import config_from_dict, config_to_dict
from pipeline.errors import InputError
from tdn.checkpoints.recipe import RECIPE_KEY, Recipe, derive_recipe
from tdn.model.networks import ModelConfig, TDNNet, build_model_from_config

FORMAT = "tdn-checkpoint/1"


class CheckpointError(InputError):
    """A weights file that does not match what it is loaded into."""


def _numpy_globals() -> list[Any]:
    """numpy scalar/array types, which released checkpoints may carry in metadata (e.g. best_prec1)."""
    core = getattr(np, "_core", None) or np.core
    return [
        core.multiarray.scalar,
        core.multiarray._reconstruct,
        np.ndarray,
        np.dtype,
        type(np.dtype(np.float64)),
    ]


def _torch_load_bytes(data: bytes, where: str) -> Any:
    try:
        # still weights_only=True: only plain numpy scalars/arrays are added to what may be unpickled
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure becomes one clear error
        raise CheckpointError(f"{where}: not a loadable torch file with weights_only=True ({exc})") from exc


def read_torch_file(uri: str) -> Any:
    """Any torch file a user hands in (local or s3://), unpickled with weights_only=True."""
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{uri}: no such file") from exc
    return _torch_load_bytes(data, uri)


def is_official_layout(obj: Any) -> bool:
    """A released TDN checkpoint: a dict with a ``state_dict`` mapping (tdn/checkpoints/official.py)."""
    return isinstance(obj, dict) and isinstance(obj.get("state_dict"), Mapping)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Raise CheckpointError unless ``state`` has exactly the model's keys with the model's shapes."""
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:20])}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {'; '.join(shapes[:20])}")
        raise CheckpointError(f"{where} does not match the model: " + " | ".join(parts))


def strict_load(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    check_state_dict(model, state, where)
    if any(p.is_meta for p in model.parameters()):
        # a shape check on the meta device (tdn/training/checkpointing.py check_weights): copying into meta
        # tensors does nothing, and torch warns once per parameter that it does nothing
        return
    model.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------------------------- project


@dataclass
class TrainingState:
    """What a training checkpoint holds besides the weights, so that a run can continue from it.

    ``optimizer``/``scheduler``: state dicts (or objects with ``state_dict()``); ``best``: the run's best
    checkpoint so far (tdn/training/selection.py); ``history``: one dict of numbers per epoch done
    (tdn/reporting/training_curves.py EpochRecord), so a resumed run keeps both.
    """

    epoch: int = 0  # epochs done
    step: int = 0  # optimiser steps done
    optimizer: Any = None
    scheduler: Any = None
    rng: Mapping[str, Any] | None = None  # tdn/training/rng.py rng_state()
    train_config: Mapping[str, Any] | None = None  # config_to_dict(TrainConfig)
    metrics: Mapping[str, float] | None = None  # of the last epoch done
    best: Mapping[str, Any] | None = None
    history: Sequence[Mapping[str, Any]] | None = None
    # a checkpoint taken inside an epoch (a preempted run): the epoch's steps done and running sums
    # (tdn/training/epoch.py EpochProgress.to_list); None at an epoch's end
    partial_epoch: Sequence[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's keys for this state (those left None are absent)."""
        ckpt: dict[str, Any] = {"epoch": int(self.epoch), "step": int(self.step)}
        for name, value in (("optimizer", self.optimizer), ("scheduler", self.scheduler)):
            if value is not None:
                ckpt[name] = value.state_dict() if hasattr(value, "state_dict") else value
        if self.rng is not None:
            ckpt["rng"] = dict(self.rng)
        if self.train_config is not None:
            ckpt["train_config"] = dict(self.train_config)
        if self.metrics is not None:
            ckpt["metrics"] = {k: float(v) for k, v in self.metrics.items()}
        if self.best is not None:
            ckpt["best"] = dict(self.best)
        if self.history is not None:
            ckpt["history"] = [dict(row) for row in self.history]
        if self.partial_epoch is not None:
            ckpt["partial_epoch"] = [float(v) for v in self.partial_epoch]
        return ckpt


def save_checkpoint(
    uri: str,
    model: nn.Module,
    model_config: ModelConfig,
    class_names: Sequence[str] | None = None,
    state: TrainingState | None = None,
    recipe: Recipe | None = None,
) -> None:
    """Write a project checkpoint atomically (temp + rename locally, one PUT on S3); ``state`` makes it a
    training checkpoint a run can resume from. ``recipe``: the model's input recipe, by default derived from
    the model config, the class names and ``state.train_config`` (recipe.py)."""
    names = list(class_names) if class_names is not None else []
    state = state or TrainingState()
    config = config_to_dict(model_config)
    recipe = recipe or derive_recipe(config, names, state.train_config)
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "model_config": config,
        "model": {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()},
        "class_names": names,
        RECIPE_KEY: recipe.to_dict(),
        **state.to_dict(),
    }
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    storage.write_bytes_atomic(uri, buf.getvalue())


def load_checkpoint(uri: str) -> dict[str, Any]:
    """Read and validate a project checkpoint dict (no model built)."""
    ckpt = read_torch_file(uri)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        official = is_official_layout(ckpt)
        hint = " (an official TDN checkpoint? use load_official_checkpoint)" if official else ""
        raise CheckpointError(f"{uri}: not a {FORMAT} checkpoint (format: {found!r}){hint}")
    for key in ("model_config", "model"):
        if key not in ckpt:
            raise CheckpointError(f"{uri}: checkpoint lacks {key!r}")
    # Checkpoints written before ModelConfig stopped carrying the ImageNet weights file (now the training
    # step TrainConfig.init.imagenet) store model_config["pretrained"], always None there: the one legacy key.
    ckpt["model_config"] = {k: v for k, v in ckpt["model_config"].items() if k != "pretrained"}
    return ckpt


def load_model_checkpoint(uri: str) -> tuple[TDNNet, dict[str, Any]]:
    """Build the model a project checkpoint describes, load its weights strictly; returns (model, ckpt)."""
    ckpt = load_checkpoint(uri)
    cfg = config_from_dict(ModelConfig, ckpt["model_config"])
    model = build_model_from_config(cfg)
    strict_load(model, ckpt["model"], uri)
    return model, ckpt
