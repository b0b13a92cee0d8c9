"""A training run's weights on disk: where a new run starts, where a restarted one resumes, what is saved.

    new run:    TDNNet (random) --init.imagenet: tdn.checkpoints.imagenet | init.checkpoint: every weight,
                the classifier too if its shape fits--> starting weights          (init_weights)
    restart:    Ray's last checkpoint, else run.resume --> model, optimizer, schedule, rng, epoch, step
                                                                                 (resume_from)
    each epoch: rank 0 --> checkpoint.pt (tdn/checkpoints/project.py format) + config.yaml
                --ray.train.report--> <storage_path>/<run name>/checkpoint_NNNNNN/  (report_checkpoint)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

import torch
import yaml
from torch import nn

from pipeline import storage
from pipeline.config import config_to_dict
from tdn.checkpoints.imagenet import load_imagenet_weights
from tdn.checkpoints.project import load_checkpoint, save_checkpoint, strict_load
from tdn.model.networks import TDNNet
from tdn.training.config import InitConfig, TrainConfig
from tdn.training.console import console
from tdn.training.optim import IterationSchedule
from tdn.training.rng import rng_state, set_rng_state

CHECKPOINT_FILE = "checkpoint.pt"


def resolve_checkpoint(uri: str) -> str:
    """A checkpoint file, or a folder (Ray checkpoint) holding ``checkpoint.pt``."""
    if storage.is_file(uri):
        return uri
    inner = storage.join(uri, CHECKPOINT_FILE)
    if storage.is_file(inner):
        return inner
    raise FileNotFoundError(f"{uri}: no checkpoint file there (expected a file or a folder with {CHECKPOINT_FILE})")


def init_weights(model: TDNNet, init: InitConfig) -> None:
    """A new run's starting weights (``init``; unset: the model keeps its random initialisation)."""
    if init.imagenet:
        load_imagenet_weights(model, init.imagenet)
    if init.checkpoint:
        init_weights_from(model, init.checkpoint)


def init_weights_from(model: nn.Module, uri: str) -> None:
    """Fine-tuning start: every weight from a project checkpoint; the classifier too if its shape fits."""
    state = dict(load_checkpoint(resolve_checkpoint(uri))["model"])
    own = model.state_dict()
    for key in ("fc.weight", "fc.bias"):
        if key in state and state[key].shape != own[key].shape:
            state[key] = own[key]  # new head: different classes
            shape = tuple(own[key].shape)
            console(f"init.checkpoint {uri}: {key} {shape} freshly initialised (classes differ)")
    strict_load(model, state, uri)


@dataclass
class Resumed:
    path: str  # the checkpoint file read
    epoch: int  # epochs done
    step: int  # optimiser steps done
    metrics: dict[str, float]  # of the last epoch done


def resume_from(
    source: str, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: IterationSchedule
) -> Resumed:
    """Continue a run from its checkpoint: weights, optimiser, schedule and RNG state, epoch and step."""
    path = resolve_checkpoint(source)
    ckpt = load_checkpoint(path)
    strict_load(model, ckpt["model"], path)
    optimizer.load_state_dict(ckpt["optimizer"])
    schedule.load_state_dict(ckpt["scheduler"])
    if "rng" in ckpt:
        set_rng_state(ckpt["rng"])
    return Resumed(path, int(ckpt["epoch"]), int(ckpt["step"]), dict(ckpt.get("metrics", {})))


def report_checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: IterationSchedule,
    cfg: TrainConfig,
    classes: list[str],
    epochs_done: int,
    step: int,
    metrics: dict[str, float],
    rank: int,
    workdir: str,
) -> str | None:
    """Rank 0 writes checkpoint.pt + config.yaml and hands them to Ray; every rank reports the metrics.

    Returns the path of a local copy of the checkpoint (rank 0), kept for the final model registration.
    """
    import ray.train

    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return None
    with tempfile.TemporaryDirectory(prefix="tdn-ckpt-") as tmp:
        path = os.path.join(tmp, CHECKPOINT_FILE)
        save_checkpoint(path, model, cfg.model, classes, optimizer=optimizer, scheduler=schedule,
                        epoch=epochs_done, step=step, rng=rng_state(), train_config=config_to_dict(cfg),
                        metrics=metrics)
        with open(os.path.join(tmp, "config.yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
        kept = os.path.join(workdir, CHECKPOINT_FILE)
        shutil.copyfile(path, kept)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    return kept
