"""Who and where a training worker is: the run it belongs to, its rank and device, the shards it reads.

driver (launcher.py)  RunSpec(train=TrainConfig, run_key, tags) -> train_loop_config {"spec": RunSpec}
worker (loop.py)      WorkerContext.from_ray(spec): rank, world size, device, split folders, the train
                      split's ShardIndex (read once, checksum verified), steps per epoch, scratch folder
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pipeline import storage
from pipeline.config import ConfigError
from pipeline.loading.planning import train_steps_per_epoch
from pipeline.loading.shard_reading import read_index
from pipeline.shards.contract import ShardIndex
from tdn.training.checkpointing import fresh_workdir
from tdn.training.config import TrainConfig


@dataclass(frozen=True)
class RunSpec:
    """What the driver hands every worker of a run."""

    train: TrainConfig
    run_key: str  # the Ray run name (also the MLflow run's tdn.train_run tag)
    tags: dict[str, str] = field(default_factory=dict)  # MLflow tags taken on the driver (user, git commit)


@dataclass(frozen=True)
class WorkerContext:
    """One training worker's place in the run (built once, at the start of the worker's loop)."""

    spec: RunSpec
    rank: int
    world: int
    local_rank: int
    device: torch.device
    index: ShardIndex  # of the train split
    steps_per_epoch: int  # the same on every rank (pipeline/loading/planning.py)
    workdir: str  # this worker's scratch folder, emptied at start (checkpointing.fresh_workdir)

    @property
    def cfg(self) -> TrainConfig:
        return self.spec.train

    @property
    def train_dir(self) -> str:
        return storage.join(self.cfg.data.shards, self.cfg.data.train_split)

    @property
    def val_dir(self) -> str:
        """The validation split folder; "" when the run does not validate."""
        return storage.join(self.cfg.data.shards, self.cfg.data.val_split) if self.cfg.data.val_split else ""

    @property
    def classes(self) -> list[str]:
        return list(self.index.classes)

    @property
    def samples_per_step(self) -> int:
        return self.cfg.loader.batch_size * self.world

    @classmethod
    def from_ray(cls, spec: RunSpec) -> WorkerContext:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        rank, world = ctx.get_world_rank(), ctx.get_world_size()
        train_dir = storage.join(spec.train.data.shards, spec.train.data.train_split)
        index = read_index(train_dir)
        if len(index.classes) != spec.train.model.num_classes:
            raise ConfigError(
                f"{train_dir} has {len(index.classes)} classes, model.num_classes={spec.train.model.num_classes}"
            )
        return cls(
            spec=spec,
            rank=rank,
            world=world,
            local_rank=ctx.get_local_rank(),
            device=ray.train.torch.get_device(),
            index=index,
            steps_per_epoch=train_steps_per_epoch(index, spec.train.loader, world),
            workdir=fresh_workdir(rank),
        )
