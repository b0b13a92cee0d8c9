"""The configuration of a training job, loaded from a YAML preset plus dotted flags (pipeline.config).

TrainConfig = model (tdn.model.networks.ModelConfig: the network only)
            + init (where a new run's weights start: ImageNet file, or a project checkpoint)
            + data (where the shards are) + loader (pipeline.loading.config.LoaderConfig)
            + optim (tdn.training.optim.OptimConfig) + run (workers, storage, seed, resume)
            + tracking (tdn.tracking.tracker.TrackingConfig)
            + checkpoint (which checkpoints are kept and registered: the best by a metric, and the last)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pipeline.loading.config import LoaderConfig
from tdn.model.networks import ModelConfig
from tdn.tracking.tracker import TrackingConfig
from tdn.training.metric_names import EPOCH_METRICS, VAL_TOP1_PCT
from tdn.training.optim import OptimConfig


@dataclass
class DataConfig:
    shards: str = ""  # folder or s3:// prefix holding <train_split>/ and <val_split>/ (shard_job output)
    train_split: str = "train"  # training split folder under data.shards
    val_split: str = "val"  # empty = no validation


@dataclass
class InitConfig:
    """Where a new run's weights start (unset: the model's own random initialisation). ``run.resume`` and
    a restart after a failure continue a run instead, from its own checkpoint, on top of this.

    imagenet:   torchvision-layout ImageNet ResNet state dict (path or s3://); both streams are initialised
                from it (tdn/checkpoints/imagenet.py), the temporal modules and the classifier stay fresh.
    checkpoint: project checkpoint (file, or folder holding checkpoint.pt) whose weights start a fine-tuning;
                its classifier is kept if its shape fits, else freshly initialised.
    """

    imagenet: str | None = None  # ImageNet ResNet state dict (path or s3://) for both streams
    checkpoint: str | None = None  # project checkpoint whose weights start a fine-tuning

    def __post_init__(self) -> None:
        if self.imagenet and self.checkpoint:
            raise ValueError("set init.imagenet or init.checkpoint, not both (a checkpoint has every weight)")


RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass
class RunConfig:
    """How the job runs (not what it learns). ``name`` empty = a fresh unique name per launch."""

    # Fields only tests set (fault injection): accepted as flags, not listed by --help (pipeline/config_docs.py).
    TEST_ONLY: ClassVar[frozenset[str]] = frozenset({"crash_once_at_step", "crash_marker"})

    name: str = ""  # run name; the same name again resumes it; empty = a fresh unique name
    storage_path: str = "./ray_results"  # local (shared between nodes) or s3://bucket/prefix
    workers: int = 1  # DDP workers
    use_gpu: bool = False  # one GPU per worker
    cpus_per_worker: float = 1.0  # CPUs reserved per worker
    max_failures: int = 3  # restarts after lost workers or nodes (-1: no limit)
    seed: int = 0  # seed of the model init, data order and augmentation
    log_every_steps: int = 20  # a progress line every this many steps
    val_every_epochs: int = 1  # validate every this many epochs
    resume: str = ""  # project checkpoint (file, or folder holding checkpoint.pt) to continue training from
    amp: bool = True  # bf16 autocast on GPU (ignored on CPU)
    channels_last: bool = True  # on GPU
    compile: bool = False  # torch.compile the model's forward and backward (GPU; minutes of compilation)
    # Fault injection for tests: the last rank exits once at this global step (marker file records it).
    crash_once_at_step: int = -1
    crash_marker: str = ""  # test only: the file that records the crash happened
    # How long the launcher waits for the cluster (or its autoscaler) to offer workers x resources per worker
    # before it gives up with one line (tdn/training/preflight.py).
    resources_timeout_s: float = 60.0
    # After SIGTERM/SIGINT to the driver, the workers stop at the next step, save a checkpoint if this leaves
    # time for one, and end the MLflow run KILLED (tdn/training/preemption.py). Keep it below Kubernetes'
    # terminationGracePeriodSeconds (30 s by default) and the time a spot instance's notice gives.
    preemption_grace_s: float = 25.0

    def __post_init__(self) -> None:
        if self.name and not RUN_NAME.fullmatch(self.name):
            # Ray takes it as a folder name and a metric tag: a space or an accent failed there, after Ray had
            # started (66 s); here it is one line before anything starts
            raise ValueError(
                f"run.name {self.name!r}: use letters, digits, '.', '_' and '-' only (at most 128, starting "
                "with a letter or digit)"
            )
        at_least = {
            "workers": 1,
            "log_every_steps": 1,
            "val_every_epochs": 1,
            "max_failures": -1,
        }  # max_failures -1: retry lost workers without limit (Ray's meaning)
        for key, low in at_least.items():
            if getattr(self, key) < low:
                raise ValueError(f"run.{key} must be >= {low}, got {getattr(self, key)}")
        if self.cpus_per_worker <= 0 or self.resources_timeout_s < 0 or self.preemption_grace_s < 0:
            raise ValueError(
                "run.cpus_per_worker must be > 0, run.resources_timeout_s and run.preemption_grace_s >= 0"
            )


@dataclass
class CheckpointConfig:
    """Which checkpoints a run keeps (Lightning-style): the ``keep`` best by ``monitor`` and always the last
    one, which a restart resumes from. The best is the one registered in MLflow (tracking.registered_model).
    Checkpoint folders are named by epoch: ``<storage_path>/<run name>/epoch_0003/``."""

    monitor: str = VAL_TOP1_PCT  # an epoch metric (tdn/training/metric_names.py) that ranks checkpoints
    mode: Literal["max", "min"] = "max"  # max: higher is better (accuracies); min: lower is better (losses)
    keep: int = 1  # best checkpoints kept besides the last one
    # Without validation (data.val_split empty) a val/ monitor is never measured: the last checkpoint is
    # the best.

    def __post_init__(self) -> None:
        if self.monitor not in EPOCH_METRICS:
            raise ValueError(
                f"checkpoint.monitor must be one of {', '.join(EPOCH_METRICS)}, got {self.monitor!r}"
            )
        if self.mode not in ("max", "min"):
            raise ValueError(f"checkpoint.mode must be max or min, got {self.mode!r}")
        if self.keep < 1:
            raise ValueError(f"checkpoint.keep must be >= 1, got {self.keep}")


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    init: InitConfig = field(default_factory=InitConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    # Keys of earlier presets and their new place: loading one fails with a message naming the new key.
    MOVED_KEYS: ClassVar[dict[str, str]] = {
        "model.pretrained": "init.imagenet",
        "run.init_from": "init.checkpoint",
        "run.keep_checkpoints": "checkpoint.keep",
    }

    def __post_init__(self) -> None:
        if self.run.workers < 1:
            raise ValueError(f"run.workers must be >= 1, got {self.run.workers}")
