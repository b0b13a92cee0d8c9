"""The final model in the MLflow model registry, as a project checkpoint anyone can load with weights_only=True.

What is registered: an MLflow *logged model* (``model_type="tdn-checkpoint"``) whose artifacts are

    checkpoint.pt   the project checkpoint (tdn/checkpoints/project.py format: model_config, model, class_names, ...)
    MLmodel         a small descriptor saying so (no MLflow flavor: nothing in it is ever unpickled)

and a registered model version pointing at it, tagged with its validation accuracy. To load it back::

    model, ckpt = load_registered_model("models:/tdn-ucf101@champion")    # or models:/tdn-ucf101/3, runs:/...
    # = mlflow.artifacts.download_artifacts(uri) + tdn.checkpoints.project.load_model_checkpoint(".../checkpoint.pt")
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from typing import Any

import yaml

CHECKPOINT_NAME = "checkpoint.pt"


def _mlmodel(model_id: str, run_id: str, metrics: Mapping[str, float]) -> str:
    return yaml.safe_dump(
        {
            "artifact_path": "model",
            "model_id": model_id,
            "run_id": run_id,
            "flavors": {},
            "tdn": {
                "format": "tdn-checkpoint/1",
                "checkpoint": CHECKPOINT_NAME,
                "load": "tdn.tracking.registry.load_registered_model(uri) or "
                "tdn.checkpoints.project.load_model_checkpoint(path/checkpoint.pt)",
                "metrics": {k: float(v) for k, v in metrics.items()},
            },
        },
        sort_keys=False,
    )


def register_checkpoint(
    client: Any,
    run_id: str,
    experiment_id: str,
    checkpoint_path: str,
    name: str,
    metrics: Mapping[str, float],
    alias: str = "",
    tags: Mapping[str, str] | None = None,
) -> str:
    """Log ``checkpoint_path`` as a logged model of run ``run_id`` and register it under ``name``.

    Returns the new version. A local (sqlite) registry store resolves ``models:/<id>`` through the *global*
    tracking URI, so this sets it to the client's (the rank-0 worker logs nowhere else).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(client.tracking_uri)

    all_tags = {**(tags or {}), **{k: f"{v:.6g}" for k, v in metrics.items()}}
    logged = client.create_logged_model(
        experiment_id, name=name, source_run_id=run_id, tags=all_tags, model_type="tdn-checkpoint"
    )
    staging = tempfile.mkdtemp(prefix="tdn-model-")
    try:
        shutil.copyfile(checkpoint_path, os.path.join(staging, CHECKPOINT_NAME))
        with open(os.path.join(staging, "MLmodel"), "w", encoding="utf-8") as f:
            f.write(_mlmodel(logged.model_id, run_id, metrics))
        client.log_model_artifacts(logged.model_id, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if metrics:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        client.log_batch(
            run_id, metrics=[Metric(f"registered.{k}", float(v), stamp, 0, model_id=logged.model_id)
                             for k, v in metrics.items()]
        )
    client.finalize_logged_model(logged.model_id, "READY")
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
            raise
    version = client.create_model_version(
        name, source=f"models:/{logged.model_id}", run_id=run_id, model_id=logged.model_id, tags=all_tags
    )
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def download_checkpoint(uri: str, tracking_uri: str | None = None) -> str:
    """Local path of the ``checkpoint.pt`` behind ``models:/name/version``, ``models:/name@alias``,
    ``models:/m-<id>`` or ``runs:/<run>/<path>`` (a folder holding checkpoint.pt, or the file itself)."""
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
    path = os.path.join(local, CHECKPOINT_NAME) if os.path.isdir(local) else local
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{uri}: no {CHECKPOINT_NAME} in the downloaded artifacts ({local})")
    return path


def load_registered_model(uri: str, tracking_uri: str | None = None) -> tuple[Any, dict[str, Any]]:
    """(model, checkpoint dict) for a registered/logged model URI; the file is read with weights_only=True."""
    from tdn.checkpoints.project import load_model_checkpoint

    return load_model_checkpoint(download_checkpoint(uri, tracking_uri))
