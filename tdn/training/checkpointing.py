"""A training run's weights on disk: where a new run starts, where a restarted one resumes, what is saved.

new run:    TDNNet (random) --init.imagenet: tdn.checkpoints.imagenet | init.checkpoint: every weight,
            the classifier too if its shape fits--> starting weights          (init_weights)
restart:    Ray's last checkpoint, else run.resume --> model, optimizer, schedule, rng, epoch, step
                                                                             (resume_from)
each epoch: rank 0 --> checkpoint.pt (tdn/checkpoints/project.py format, with the run's best so far and
            its per-epoch history) + config.yaml
            --ray.train.report--> <storage_path>/<run name>/epoch_NNNN/  (report_checkpoint)
            Ray keeps the checkpoint.keep best by checkpoint.monitor and the last one (launcher.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass

import torch
import yaml
from torch import nn

from pipeline import storage
from pipeline.config import config_to_dict
from tdn.checkpoints.imagenet import load_imagenet_weights
from tdn.checkpoints.project import (
    CheckpointError,
    check_state_dict,
    load_checkpoint,
    save_checkpoint,
    strict_load,
)
from tdn.model.networks import TDNNet, build_model_from_config
from tdn.reporting.training_curves import EpochRecord
from tdn.training.config import InitConfig, TrainConfig
from tdn.training.console import console
from tdn.training.optim import IterationSchedule
from tdn.training.rng import rng_state, set_rng_state
from tdn.training.selection import BestCheckpoint, epoch_dir

CHECKPOINT_FILE = "checkpoint.pt"


def resolve_checkpoint(uri: str) -> str:
    """A checkpoint file, or a folder (Ray checkpoint) holding ``checkpoint.pt``."""
    if storage.is_file(uri):
        return uri
    inner = storage.join(uri, CHECKPOINT_FILE)
    if storage.is_file(inner):
        return inner
    raise FileNotFoundError(
        f"{uri}: no checkpoint file there (expected a file or a folder with {CHECKPOINT_FILE})"
    )


def fresh_workdir(run_key: str, rank: int) -> str:
    """A training worker's scratch folder, emptied: ``<tmp>/tdn-train-<run>-rank<r>``. Every attempt of a
    run uses the same path, so a restarted worker group removes what a killed one left (copies of Ray's
    checkpoint, checkpoint.pt, config.yaml); the loop removes it when it ends."""
    digest = hashlib.sha1(run_key.encode("utf-8")).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"tdn-train-{digest}-rank{rank}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


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


def check_weights(cfg: TrainConfig) -> None:
    """On the driver, before workers start: ``init.imagenet``, ``init.checkpoint`` and ``run.resume`` are
    readable (weights_only=True) and fit the model ``cfg.model`` describes, which is built on the meta device
    (shapes, no memory); raises CheckpointError / FileNotFoundError naming the file."""
    with torch.device("meta"):
        model = build_model_from_config(cfg.model)
    with (
        warnings.catch_warnings()
    ):  # torch warns that copying into a meta tensor does nothing: that is the point
        warnings.simplefilter("ignore", UserWarning)
        init_weights(model, cfg.init)
    if cfg.run.resume:
        path = resolve_checkpoint(cfg.run.resume)
        ckpt = load_checkpoint(path)
        check_state_dict(model, ckpt["model"], path)
        missing = [key for key in ("optimizer", "scheduler", "epoch", "step") if key not in ckpt]
        if missing:
            raise CheckpointError(
                f"{path}: run.resume needs a training checkpoint; it lacks {', '.join(missing)} "
                "(init.checkpoint starts a new run from its weights)"
            )


@dataclass
class Resumed:
    path: str  # the checkpoint file read
    epoch: int  # epochs done
    step: int  # optimiser steps done
    metrics: dict[str, float]  # of the last epoch done
    best: BestCheckpoint  # the run's best checkpoint so far (a fresh one for a checkpoint without it)
    history: list[EpochRecord]  # one record per epoch done (empty for a checkpoint without it)


def resume_from(
    source: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: IterationSchedule,
    monitor: str,
    mode: str,
) -> Resumed:
    """Continue a run from its checkpoint: weights, optimiser, schedule and RNG state, epoch and step, and
    what it knew of its best checkpoint (by ``monitor``/``mode``) and its history."""
    path = resolve_checkpoint(source)
    ckpt = load_checkpoint(path)
    strict_load(model, ckpt["model"], path)
    optimizer.load_state_dict(ckpt["optimizer"])
    schedule.load_state_dict(ckpt["scheduler"])
    if "rng" in ckpt:
        set_rng_state(ckpt["rng"])
    best = BestCheckpoint.from_dict(dict(ckpt.get("best", {})), monitor, mode)
    history = [EpochRecord(**row) for row in ckpt.get("history", [])]
    return Resumed(path, int(ckpt["epoch"]), int(ckpt["step"]), dict(ckpt.get("metrics", {})), best, history)


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
    best: BestCheckpoint,
    history: list[EpochRecord],
) -> str | None:
    """Rank 0 writes checkpoint.pt + config.yaml and hands them to Ray as ``epoch_NNNN``; every rank reports
    the metrics.

    Returns the path of a local copy of the checkpoint (rank 0); when it is the best so far it is also
    copied to ``<workdir>/best/checkpoint.pt``, which the final model registration logs.
    """
    import ray.train

    # Ray ranks checkpoints by the monitored value: an epoch without it (not validated) ranks last (NaN)
    # instead of Ray logging an error-level "Result dict has no key" line
    reported = {**metrics, best.monitor: metrics.get(best.monitor, math.nan)}
    name = epoch_dir(epochs_done)
    if rank != 0:
        ray.train.report(reported, checkpoint=None, checkpoint_dir_name=name)
        return None
    with tempfile.TemporaryDirectory(prefix="ckpt-", dir=workdir) as tmp:
        path = os.path.join(tmp, CHECKPOINT_FILE)
        save_checkpoint(
            path,
            model,
            cfg.model,
            classes,
            optimizer=optimizer,
            scheduler=schedule,
            epoch=epochs_done,
            step=step,
            rng=rng_state(),
            train_config=config_to_dict(cfg),
            metrics=metrics,
            best=best.to_dict(),
            history=[dataclasses.asdict(r) for r in history],
        )
        with open(os.path.join(tmp, "config.yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
        kept = os.path.join(workdir, CHECKPOINT_FILE)
        shutil.copyfile(path, kept)
        if best.epoch == epochs_done:
            os.makedirs(os.path.join(workdir, "best"), exist_ok=True)
            shutil.copyfile(path, best_copy(workdir))
        checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(reported, checkpoint=checkpoint, checkpoint_dir_name=name)
    return kept


def best_copy(workdir: str) -> str:
    """Rank 0's local copy of the best checkpoint seen by this process."""
    return os.path.join(workdir, "best", CHECKPOINT_FILE)


def best_checkpoint_file(
    cfg: TrainConfig, run_key: str, best: BestCheckpoint, workdir: str, last: str
) -> str:
    """The checkpoint file to register: the best one (this process's copy, else the one Ray kept in the run's
    storage, downloaded if on S3); the last one when no epoch measured the monitor."""
    if best.epoch == 0:
        return last
    if os.path.exists(best_copy(workdir)):
        return best_copy(workdir)
    stored = storage.join(cfg.run.storage_path, run_key, epoch_dir(best.epoch), CHECKPOINT_FILE)
    if not storage.exists(stored):  # the best was in another run (run.resume from it): its file is there
        console(f"warning: best checkpoint {stored} not found; registering the last one")
        return last
    if not storage.is_s3(stored):
        return stored
    os.makedirs(os.path.dirname(best_copy(workdir)), exist_ok=True)
    with open(best_copy(workdir), "wb") as f:
        f.write(storage.read_bytes(stored))
    return best_copy(workdir)
