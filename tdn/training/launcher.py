"""Launching a training run on a Ray cluster: TorchTrainer + scaling, storage, failure and checkpoint settings.

    result = fit(cfg)                    # cfg: tdn.training.config.TrainConfig; cluster: RAY_ADDRESS or local
    result.checkpoint.path               # the last: <storage_path>/<run name>/epoch_NNNN/checkpoint.pt
    best_checkpoint(cfg, result).path    # the best by cfg.checkpoint.monitor (the registered one)

Names: an empty ``run.name`` becomes ``<variant>-<arch>-<UTC time>-<random>`` so that each launch is a fresh
run -- Ray resumes a run automatically when ``name`` + ``storage_path`` already exist, which is what to do on
purpose (same name again) after the driver itself died. Lost workers and nodes are retried inside one launch
(``run.max_failures``), each time from the last reported checkpoint; a bad input is not: the driver checks the
shards, weights files and cluster resources before workers start (preflight.py), and a worker that meets a
bad input ends the run at once (failures.py).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from typing import Any

from pipeline import storage
from pipeline.errors import Stopped
from pipeline.forwarded_env import runtime_env
from pipeline.ray_connect import init_ray
from tdn.tracking.journal import journal_uri
from tdn.tracking.lineage import git_commit, source_tags
from tdn.tracking.mlflow_store import (
    FAILURE_TAG,
    GIT_COMMIT_TAG,
    STOP_REASON_TAG,
    TRAIN_RUN_TAG,
    find_run_by_tag,
    tracking_client,
)
from tdn.training.config import TrainConfig
from tdn.training.failures import StopOnInputError, input_error_of
from tdn.training.loop import train_loop_per_worker
from tdn.training.metric_names import STEP
from tdn.training.preemption import EXIT_CODES, DriverSignals, StopRequest, clear_stop
from tdn.training.preflight import check_inputs, check_resources, locate_shards, resources_per_worker
from tdn.training.selection import is_measured
from tdn.training.worker import RunSpec


def run_name(cfg: TrainConfig) -> str:
    if cfg.run.name:
        return cfg.run.name
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{cfg.model.variant}-{cfg.model.arch}-{stamp}-{secrets.token_hex(3)}"


def storage_path(cfg: TrainConfig) -> str:
    # Ray wants an absolute local path (shared by all nodes) or a URI.
    return (
        cfg.run.storage_path if storage.is_s3(cfg.run.storage_path) else os.path.abspath(cfg.run.storage_path)
    )


def tracking_journal(cfg: TrainConfig, result: Any) -> str:
    """The journal of MLflow calls a finished ``fit`` could not send (tdn/tracking/journal.py; it exists only
    then): ``<storage_path>/<run name>/mlflow-journal/journal.jsonl``."""
    name = str(result.path).rstrip("/").rsplit("/", 1)[-1]  # Ray's run folder (an S3 one without its s3://)
    return journal_uri(storage.join(storage_path(cfg), name))


def with_absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """Relative local paths resolved against the launching directory: Ray Train workers run elsewhere."""

    def absolute(path: str) -> str:
        return os.path.abspath(path) if path and "://" not in path else path

    def absolute_or_none(path: str | None) -> str | None:
        return None if path is None else absolute(path)

    return dataclasses.replace(
        cfg,
        init=dataclasses.replace(
            cfg.init,
            imagenet=absolute_or_none(cfg.init.imagenet),
            checkpoint=absolute_or_none(cfg.init.checkpoint),
        ),
        data=dataclasses.replace(cfg.data, shards=absolute(cfg.data.shards)),
        run=dataclasses.replace(
            cfg.run,
            resume=absolute(cfg.run.resume),
            storage_path=storage_path(cfg),
            crash_marker=absolute(cfg.run.crash_marker),
        ),
        tracking=dataclasses.replace(cfg.tracking, uri=cfg.tracking.resolved_uri()),
    )


def worker_env(cfg: TrainConfig) -> dict[str, Any]:
    """The workers' runtime_env: the forwarded variables (pipeline/forwarded_env.py, never credentials) and
    the run's tracking URI."""
    return runtime_env({"MLFLOW_TRACKING_URI": cfg.tracking.uri} if cfg.tracking.uri else None)


def build_trainer(cfg: TrainConfig) -> Any:
    """The TorchTrainer for ``cfg`` (not started).

    Built on Ray Train V2 (the default in the pinned Ray 2.60): only its RunConfig takes
    ``worker_runtime_env``. Trainer and configs come from the V2 modules by name, because ``ray.train`` and
    ``ray.train.torch`` re-export the V1 ones when RAY_TRAIN_V2_ENABLED=0, and those are what a type checker
    sees there. The workers' ``ray.train.report`` & co. follow that variable, hence the check.
    """
    import ray.train
    from ray.train.v2.api.config import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.v2.torch.torch_trainer import TorchTrainer

    if ray.train.RunConfig is not RunConfig:
        raise RuntimeError("Ray Train V2 is disabled (RAY_TRAIN_V2_ENABLED=0); training needs it: unset it")

    name = run_name(cfg)
    commit = git_commit()
    # tags taken here on the driver: the launching user and job script, not the worker's
    tags = {**source_tags(commit), **({GIT_COMMIT_TAG: commit} if commit else {})}
    loop_config = {"spec": RunSpec(train=cfg, run_key=name, tags=tags)}
    resources = resources_per_worker(cfg)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=cfg.run.workers, use_gpu=cfg.run.use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path(cfg),
            failure_config=FailureConfig(max_failures=cfg.run.max_failures),
            # the checkpoint.keep best by checkpoint.monitor, and always the last one (Ray V2's
            # CheckpointManager never deletes its latest checkpoint), which a restart resumes from
            checkpoint_config=CheckpointConfig(
                num_to_keep=cfg.checkpoint.keep,
                checkpoint_score_attribute=cfg.checkpoint.monitor,
                checkpoint_score_order=cfg.checkpoint.mode,
            ),
            worker_runtime_env=worker_env(cfg),
            # a bad input ends the run at once (failures.py). RunConfig types callbacks as UserCallbacks, but
            # passes the others to the controller as they are (DataParallelTrainer._create_default_callbacks)
            callbacks=[StopOnInputError()],  # type: ignore[list-item]
        ),
    )


def best_checkpoint(cfg: TrainConfig, result: Any) -> Any:
    """The best checkpoint Ray kept by ``checkpoint.monitor`` (an epoch that did not measure it never is:
    selection.UNMEASURED); the last one when none did (no validation). None when the run reported no checkpoint."""
    scored = [
        (checkpoint, float(metrics[cfg.checkpoint.monitor]))
        for checkpoint, metrics in (result.best_checkpoints or [])
        if is_measured(metrics.get(cfg.checkpoint.monitor))
    ]
    if not scored:
        return result.checkpoint
    pick = max if cfg.checkpoint.mode == "max" else min
    return pick(scored, key=lambda item: item[1])[0]


def fit(cfg: TrainConfig, address: str | None = None) -> Any:
    """Train on the Ray cluster at ``address`` (else RAY_ADDRESS, else a local one); returns the Ray Result.

    Before any worker starts, the shards, the weights files and the cluster's resources are checked
    (tdn/training/preflight.py). Raises an InputError (pipeline/errors.py; a ValueError) or FileNotFoundError
    naming the file or key for a bad input, found there or by a worker (then without restarting the workers:
    tdn/training/failures.py), ``ray.train.TrainingFailedError`` once ``run.max_failures`` restarts after
    lost workers are used up, and RunStopped when SIGTERM/SIGINT stopped the run (tdn/training/preemption.py).
    """
    cfg = locate_shards(
        with_absolute_paths(cfg)
    )  # a split folder or its parent (pipeline/shards/location.py)
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, name=run_name(cfg)))
    check_inputs(cfg)
    init_ray(address)
    check_resources(cfg)
    trainer = build_trainer(cfg)
    clear_stop(cfg.run.name)  # a stop of an earlier launch of this run name is over
    signals = DriverSignals(cfg.run.name, cfg.run.preemption_grace_s)
    try:
        result = signals.run(trainer.fit)
    except Exception as exc:
        bad_input = input_error_of(exc)
        if bad_input is None or signals.request is not None:
            raise
        # rank 0 ends its MLflow run FAILED, unless the worker group is shut down first: then it is done here
        end_mlflow_run(cfg, "FAILED", str(bad_input))
        raise bad_input from None
    if signals.request is None:
        return result
    if result is None:  # the workers did not stop within the grace period: the run ends here all the same
        reason = f"{signals.request.reason()}; its workers did not stop within the grace period"
        end_mlflow_run(cfg, "KILLED", reason)
    raise RunStopped(cfg.run.name, signals.request, result)


class RunStopped(Stopped):
    """A training run stopped by SIGTERM/SIGINT to its driver (its workers stopped at a step boundary)."""

    def __init__(self, run_key: str, request: StopRequest, result: Any) -> None:
        checkpoint = getattr(result, "checkpoint", None)
        step = (getattr(result, "metrics", None) or {}).get(STEP)
        where = f"last checkpoint {checkpoint.path}" if checkpoint is not None else "no checkpoint"
        at = f" after step {step}" if step is not None else ""
        message = f"run {run_key} stopped by {request.signal}{at} ({where})"
        super().__init__(message, EXIT_CODES.get(request.signal, 143))
        self.run_key = run_key


def end_mlflow_run(cfg: TrainConfig, status: str, reason: str) -> None:
    """End the run's MLflow run from the driver when its rank 0 could not (a worker group shut down, workers
    that did not stop in time), the reason as a tag; best effort, and only a run still RUNNING."""
    if not cfg.tracking.enabled:
        return
    try:
        client = tracking_client(cfg.tracking.uri)
        experiment = client.get_experiment_by_name(cfg.tracking.experiment)
        run = (
            find_run_by_tag(client, experiment.experiment_id, TRAIN_RUN_TAG, cfg.run.name)
            if experiment
            else None
        )
        if run is not None and run.info.status == "RUNNING":
            client.set_tag(run.info.run_id, STOP_REASON_TAG if status == "KILLED" else FAILURE_TAG, reason)
            client.set_terminated(run.info.run_id, status)
    except Exception:  # noqa: BLE001 - the job ends with its own message whatever MLflow answers
        pass
