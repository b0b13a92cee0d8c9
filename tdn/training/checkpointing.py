"""A training run's weights on disk: where a new run starts, where a restarted one resumes, what is saved.

new run:    TDNNet (random) --init.imagenet: tdn.checkpoints.imagenet | init.checkpoint: every weight,
            the classifier too if its shape fits--> starting weights          (init_weights)
restart:    Ray's last checkpoint, else run.resume --> Trainer (model, optimizer, schedule, step), rng,
            RunState (epochs done, best, history)                             (resume_from)
each epoch: rank 0 --> checkpoint.pt (tdn/checkpoints/project.py format, with the run's best so far and
            its per-epoch history) + config.yaml
            --ray.train.report--> <storage_path>/<run name>/epoch_NNNN/  (CheckpointWriter.report)
            Ray keeps the checkpoint.keep best by checkpoint.monitor and the last one (launcher.py).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import torch
import yaml
from torch import nn

from pipeline import storage
from pipeline.config import config_to_dict
from pipeline.disk import disk_full, free_bytes, full_disk_is_an_input_error
from pipeline.scratch import remove_abandoned, scratch_dir
from tdn.checkpoints.imagenet import load_imagenet_weights
from tdn.checkpoints.project import (
    CheckpointError,
    TrainingState,
    check_state_dict,
    load_checkpoint,
    save_checkpoint,
    strict_load,
)
from tdn.model.networks import TDNNet, build_model_from_config
from tdn.reporting.training_curves import EpochRecord
from tdn.training import metric_names as names
from tdn.training.config import InitConfig, TrainConfig
from tdn.training.console import console
from tdn.training.epoch import EpochProgress
from tdn.training.rng import rng_state, set_rng_state
from tdn.training.selection import BestCheckpoint, epoch_dir, ray_score
from tdn.training.trainer import Trainer

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


def fresh_workdir(rank: int) -> str:
    """A training worker's scratch folder (checkpoint copies, config.yaml, the registered model's files):
    ``<tmp>/tdn-train-<host>-<pid>-<random>``, removed when the loop ends; what a killed worker left is
    removed by the next start of any run on the node (pipeline/scratch.py remove_abandoned)."""
    remove_abandoned()
    return scratch_dir("train")


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
    if not (cfg.init.imagenet or cfg.init.checkpoint or cfg.run.resume):
        # Nothing to read. Building even the meta model imports torch._dynamo (torch's init functions
        # go through it): 1.6 s of the driver's CPU for each training run (py-spy, 2026-12-08). ModelConfig
        # has already checked the architecture.
        return
    with torch.device("meta"):
        model = build_model_from_config(cfg.model)
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
class RunState:
    """What a run knows between epochs; every checkpoint keeps it, so a restarted or resumed run goes on
    with the same best checkpoint and history."""

    best: BestCheckpoint  # the run's best checkpoint so far by checkpoint.monitor
    history: list[EpochRecord] = field(default_factory=list)  # one record per epoch done
    epochs_done: int = 0
    last_metrics: dict[str, float] = field(default_factory=dict)  # of the last epoch done
    last_checkpoint: str | None = None  # rank 0: local copy of the last checkpoint written (or resumed)
    resumed_from: str = ""  # the checkpoint this process continued from; "" = a new run
    partial: EpochProgress | None = None  # resumed inside an epoch: its steps done and sums (rank 0's)

    def record_epoch(self, metrics: dict[str, float]) -> bool:
        """Take a finished epoch's metrics (``epoch`` = epochs done): best so far, history, last metrics;
        True when it is the new best. ``metrics`` gains best/<monitor> once the monitor was measured."""
        self.epochs_done, self.last_metrics = int(metrics[names.EPOCH]), metrics
        new_best = self.best.update(metrics, self.epochs_done)
        if self.best.score is not None:
            metrics[names.best_key(self.best.monitor)] = self.best.score
        self.history.append(epoch_record(metrics))
        return new_best


def epoch_record(metrics: dict[str, float]) -> EpochRecord:
    """The epoch's row of metrics.csv (tdn/reporting/training_curves.py)."""
    return EpochRecord(
        epoch=int(metrics[names.EPOCH]),
        step=int(metrics[names.STEP]),
        train_loss=metrics[names.EPOCH_LOSS],
        train_top1_pct=metrics[names.EPOCH_TOP1_PCT],
        lr=metrics[names.LR],
        epoch_time_s=metrics[names.EPOCH_TIME_S],
        samples_per_s=metrics[names.EPOCH_SAMPLES_PER_S],
        val_loss=metrics.get(names.VAL_LOSS),
        val_top1_pct=metrics.get(names.VAL_TOP1_PCT),
        val_top5_pct=metrics.get(names.VAL_TOP5_PCT),
    )


def resume_from(source: str, trainer: Trainer, monitor: str, mode: str) -> RunState:
    """Continue a run from its checkpoint: weights (strictly), optimiser, schedule, step and RNG state, and
    what it knew of its best checkpoint (by ``monitor``/``mode``) and its history."""
    path = resolve_checkpoint(source)
    ckpt = load_checkpoint(path)
    strict_load(trainer.model, ckpt["model"], path)
    trainer.load_state_dict(ckpt)
    if "rng" in ckpt:
        set_rng_state(ckpt["rng"])
    partial = EpochProgress.from_list(ckpt["partial_epoch"]) if "partial_epoch" in ckpt else None
    if (
        partial is not None
        and trainer.step != int(ckpt["epoch"]) * trainer.settings.steps_per_epoch + partial.done
    ):
        raise CheckpointError(
            f"{path} was saved at step {trainer.step}, {partial.done} steps into epoch {int(ckpt['epoch']) + 1}; "
            f"this run has {trainer.settings.steps_per_epoch} steps per epoch, not the checkpoint's: resume it "
            "with the same workers and batch size"
        )
    return RunState(
        best=BestCheckpoint.from_dict(dict(ckpt.get("best", {})), monitor, mode),
        history=[EpochRecord(**row) for row in ckpt.get("history", [])],
        epochs_done=int(ckpt["epoch"]),
        last_metrics=dict(ckpt.get("metrics", {})),
        last_checkpoint=path,
        resumed_from=path,
        partial=partial,
    )


@dataclass
class CheckpointWriter:
    """Writes each epoch's checkpoint on rank 0 and reports it (and the metrics, from every rank) to Ray."""

    cfg: TrainConfig
    classes: list[str]
    rank: int
    workdir: str  # rank 0's scratch folder (fresh_workdir)
    last_seconds: float = 0.0  # how long the last report took (a stopping run: is there time for one?)

    def report(
        self,
        trainer: Trainer,
        state: RunState,
        metrics: dict[str, float],
        partial: EpochProgress | None = None,
    ) -> str | None:
        """checkpoint.pt + config.yaml handed to Ray as ``epoch_NNNN`` (``state.epochs_done``), or, inside an
        epoch (``partial``: a stopping run), as ``epoch_NNNN_step_SSSSSSS``; returns rank 0's local copy,
        also kept as ``<workdir>/best/checkpoint.pt`` when it is the best so far (the final registration
        logs that one)."""

        started = time.monotonic()
        try:
            return self._report(trainer, state, metrics, partial)
        finally:
            self.last_seconds = time.monotonic() - started

    def _report(
        self, trainer: Trainer, state: RunState, metrics: dict[str, float], partial: EpochProgress | None
    ) -> str | None:
        import ray.train

        # Ray ranks checkpoints by the monitored value: an epoch without it (not validated, or cut short)
        # ranks last (selection.UNMEASURED) instead of Ray logging an error-level "Result dict has no key"
        monitored = metrics.get(state.best.monitor) if partial is None else None
        score = ray_score(monitored, state.best.mode)
        reported = {**metrics, state.best.monitor: score, names.STEP: trainer.step}
        name = epoch_dir(state.epochs_done)
        if partial is not None:
            name = f"{epoch_dir(state.epochs_done + 1)}_step_{trainer.step:07d}"
        if self.rank != 0:
            ray.train.report(reported, checkpoint=None, checkpoint_dir_name=name)
            return None
        with tempfile.TemporaryDirectory(prefix="ckpt-", dir=self.workdir) as tmp:
            path = os.path.join(tmp, CHECKPOINT_FILE)
            training = TrainingState(
                epoch=state.epochs_done,
                step=trainer.step,
                optimizer=trainer.optimizer,
                scheduler=trainer.schedule,
                rng=rng_state(),
                train_config=config_to_dict(self.cfg),
                metrics=metrics,
                best=state.best.to_dict(),
                history=[dataclasses.asdict(r) for r in state.history],
                partial_epoch=partial.to_list() if partial is not None else None,
            )
            # about the weights twice (SGD keeps one momentum buffer per weight) until it is written
            estimate = 2 * sum(t.numel() * t.element_size() for t in trainer.model.state_dict().values())
            with full_disk_is_an_input_error(self.workdir, estimate):
                save_checkpoint(path, trainer.model, self.cfg.model, self.classes, training)
                with open(os.path.join(tmp, "config.yaml"), "w", encoding="utf-8") as f:
                    yaml.safe_dump(config_to_dict(self.cfg), f, sort_keys=False)
                kept = os.path.join(self.workdir, CHECKPOINT_FILE)
                shutil.copyfile(path, kept)
                if partial is None and state.best.epoch == state.epochs_done:
                    os.makedirs(os.path.join(self.workdir, "best"), exist_ok=True)
                    shutil.copyfile(path, best_copy(self.workdir))
            dest = storage.join(self.cfg.run.storage_path, self.cfg.run.name, name)
            needed = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
            local = not storage.is_s3(dest)
            free = free_bytes(dest) if local else None
            if free is not None and free < needed:  # Ray would write part of it, then fail and retry
                raise disk_full(dest, needed)
            with full_disk_is_an_input_error(dest, needed, partial=[dest] if local else []):
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
