"""Launching a training run on a Ray cluster: TorchTrainer + scaling, storage, failure and checkpoint settings.

    result = fit(cfg)                    # cfg: tdn.training.config.TrainConfig; cluster: RAY_ADDRESS or local
    result.checkpoint.path               # <storage_path>/<run name>/checkpoint_.../checkpoint.pt

Names: an empty ``run.name`` becomes ``<variant>-<arch>-<UTC time>-<random>`` so that each launch is a fresh
run -- Ray resumes a run automatically when ``name`` + ``storage_path`` already exist, which is what to do on
purpose (same name again) after the driver itself died. Worker failures are retried inside one launch
(``run.max_failures``), each time from the last reported checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import time
from typing import Any

from pipeline import storage
from pipeline.config import config_to_dict
from pipeline.ray_connect import init_ray
from tdn.tracking.mlflow_store import GIT_COMMIT_TAG
from tdn.training.config import TrainConfig
from tdn.training.loop import train_loop_per_worker

# Environment that workers on other nodes need to reach the same S3 endpoint / tracking server.
FORWARDED_ENV = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION", "AWS_REGION", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_DISABLE_TELEMETRY",
)  # fmt: skip


def run_name(cfg: TrainConfig) -> str:
    if cfg.run.name:
        return cfg.run.name
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{cfg.model.variant}-{cfg.model.arch}-{stamp}-{secrets.token_hex(3)}"


def git_commit() -> str:
    """The commit of the code being launched ('' outside a git checkout)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    if out.returncode != 0:
        return ""
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def storage_path(cfg: TrainConfig) -> str:
    # Ray wants an absolute local path (shared by all nodes) or a URI.
    return cfg.run.storage_path if storage.is_s3(cfg.run.storage_path) else os.path.abspath(cfg.run.storage_path)


def with_absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """Relative local paths resolved against the launching directory: Ray Train workers run elsewhere."""

    def absolute(path: str | None) -> str | None:
        return os.path.abspath(path) if path and "://" not in path else path

    return dataclasses.replace(
        cfg,
        init=dataclasses.replace(cfg.init, imagenet=absolute(cfg.init.imagenet),
                                 checkpoint=absolute(cfg.init.checkpoint)),
        data=dataclasses.replace(cfg.data, shards=absolute(cfg.data.shards)),
        run=dataclasses.replace(
            cfg.run, resume=absolute(cfg.run.resume), storage_path=storage_path(cfg),
            crash_marker=absolute(cfg.run.crash_marker),
        ),
        tracking=dataclasses.replace(cfg.tracking, uri=cfg.tracking.resolved_uri()),
    )


def worker_env(cfg: TrainConfig) -> dict[str, str]:
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    if cfg.tracking.uri:
        env["MLFLOW_TRACKING_URI"] = cfg.tracking.uri
    return env


def build_trainer(cfg: TrainConfig) -> Any:
    """The TorchTrainer for ``cfg`` (not started)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    name = run_name(cfg)
    commit = git_commit()
    loop_config = {
        "train": config_to_dict(cfg),
        "run_key": name,
        "tags": {GIT_COMMIT_TAG: commit} if commit else {},
    }
    resources = {"CPU": cfg.run.cpus_per_worker}
    if cfg.run.use_gpu:
        resources["GPU"] = 1
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.run.workers, use_gpu=cfg.run.use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path(cfg),
            failure_config=ray.train.FailureConfig(max_failures=cfg.run.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.run.keep_checkpoints),
            worker_runtime_env={"env_vars": worker_env(cfg)},
        ),
    )


def fit(cfg: TrainConfig, address: str | None = None) -> Any:
    """Train on the Ray cluster at ``address`` (else RAY_ADDRESS, else a local one); returns the Ray Result.

    Raises ``ray.train.TrainingFailedError`` once ``run.max_failures`` restarts are used up.
    """
    cfg = with_absolute_paths(cfg)
    if cfg.run.resume and not storage.exists(cfg.run.resume):
        raise FileNotFoundError(f"run.resume: {cfg.run.resume} does not exist")
    if not cfg.data.shards:
        raise ValueError("data.shards is empty: pass --data.shards DIR (the shard job's output folder)")
    init_ray(address)
    trainer = build_trainer(cfg)
    return trainer.fit()
