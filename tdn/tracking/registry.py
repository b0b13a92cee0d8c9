"""The final model in the MLflow model registry, as a project checkpoint anyone can load with weights_only=True.

What is registered: an MLflow *logged model* (``model_type="tdn-checkpoint"``) whose artifacts are

    checkpoint.pt   the project checkpoint (tdn/checkpoints/project.py format: model_config, model, class_names, ...)
    MLmodel         a small descriptor saying so (no MLflow flavor: nothing in it is ever unpickled)

and a registered model version pointing at it, tagged with its validation accuracy. To load it back::

    model, ckpt = load_registered_model("models:/tdn-ucf101@champion")    # or models:/tdn-ucf101/3, runs:/...
    # = mlflow.artifacts.download_artifacts(uri) + tdn.checkpoints.project.load_model_checkpoint(".../checkpoint.pt")

The other registry calls: ``resolve_model_version`` (``models:/name@alias`` or ``models:/name/3`` -> the
version and its training run), ``tag_model_version`` (evaluation links a version to its latest result) and
``ready_versions`` (what re-evaluation considers). Clients come from tdn/tracking/mlflow_store.py.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from pipeline.errors import InputError
from tdn.tracking.mlflow_store import download_artifacts, set_global_tracking_uri, tracking_client

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_TYPE = "tdn-checkpoint"


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
    client: MlflowClient,
    run_id: str,
    experiment_id: str,
    checkpoint_path: str,
    name: str,
    metrics: Mapping[str, float],
    alias: str = "",
    tags: Mapping[str, str] | None = None,
) -> str:
    """Log ``checkpoint_path`` as a logged model of run ``run_id`` and register it under ``name``.

    Returns the version. Idempotent: a run has at most one logged model and one version of ``name``; a call
    retried after an outage, or a finished run launched again, finds them and completes what is missing
    instead of creating more. A local (sqlite) registry store resolves ``models:/<id>`` through the *global*
    tracking URI, so this sets it to the client's (the rank-0 worker logs nowhere else).
    """
    set_global_tracking_uri(client.tracking_uri)

    all_tags = {**(tags or {}), **{k: f"{v:.6g}" for k, v in metrics.items()}}
    version = _version_of_run(client, name, run_id)
    if version is not None:
        if alias:
            client.set_registered_model_alias(name, alias, version)
        return version
    logged = _logged_model_of_run(client, experiment_id, name, run_id)
    if logged is not None and _is_ready(logged):
        return _register_version(client, name, run_id, logged.model_id, all_tags, alias)
    if logged is None:
        logged = client.create_logged_model(
            experiment_id, name=name, source_run_id=run_id, tags=all_tags, model_type=MODEL_TYPE
        )
    staging = tempfile.mkdtemp(prefix="tdn-model-")
    try:
        shutil.copyfile(checkpoint_path, os.path.join(staging, CHECKPOINT_NAME))
        with open(os.path.join(staging, "MLmodel"), "w", encoding="utf-8") as f:
            f.write(_mlmodel(logged.model_id, run_id, metrics))
        client.log_model_artifacts(logged.model_id, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if metrics and not any(k.startswith("registered.") for k in client.get_run(run_id).data.metrics):
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[
                Metric(f"registered.{k}", float(v), stamp, 0, model_id=logged.model_id)
                for k, v in metrics.items()
            ],
        )
    client.finalize_logged_model(logged.model_id, "READY")
    return _register_version(client, name, run_id, logged.model_id, all_tags, alias)


def _logged_model_of_run(client: MlflowClient, experiment_id: str, name: str, run_id: str) -> Any:
    """The run's logged model named ``name`` (READY first, else the oldest one left PENDING), or None."""
    found = client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{run_id}' AND name = '{name}'", max_results=100
    )
    models = [m for m in found if m.model_type == MODEL_TYPE]
    ready = [m for m in models if _is_ready(m)]
    pool = ready or models
    return min(pool, key=lambda m: m.creation_timestamp) if pool else None


def _is_ready(model: Any) -> bool:
    from mlflow.entities import LoggedModelStatus

    return bool(model.status == LoggedModelStatus.READY)


def _version_of_run(client: MlflowClient, name: str, run_id: str) -> str | None:
    """The lowest version of ``name`` registered from run ``run_id``, or None."""
    versions = client.search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")
    return str(min(int(v.version) for v in versions)) if versions else None


def _register_version(client: MlflowClient, name: str, run_id: str, model_id: str, tags: Mapping[str, str],
                      alias: str) -> str:  # fmt: skip
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
            raise
    version = _version_of_run(client, name, run_id)  # a retry after the answer was lost
    if version is None:
        created = client.create_model_version(
            name, source=f"models:/{model_id}", run_id=run_id, model_id=model_id, tags=dict(tags)
        )
        version = str(created.version)
    if alias:
        client.set_registered_model_alias(name, alias, version)
    return version


def download_checkpoint(uri: str, tracking_uri: str | None = None) -> str:
    """Local path of the ``checkpoint.pt`` behind ``models:/name/version``, ``models:/name@alias``,
    ``models:/m-<id>`` or ``runs:/<run>/<path>`` (a folder holding checkpoint.pt, or the file itself)."""
    if tracking_uri:
        set_global_tracking_uri(tracking_uri)
    local = download_artifacts(uri)
    path = os.path.join(local, CHECKPOINT_NAME) if os.path.isdir(local) else local
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{uri}: no {CHECKPOINT_NAME} in the downloaded artifacts ({local})")
    return path


def load_registered_model(uri: str, tracking_uri: str | None = None) -> tuple[Any, dict[str, Any]]:
    """(model, checkpoint dict) for a registered/logged model URI; the file is read with weights_only=True."""
    from tdn.checkpoints.project import load_model_checkpoint

    return load_model_checkpoint(download_checkpoint(uri, tracking_uri))


# ----------------------------------------------------------------------------------------------- versions


@dataclass(frozen=True)
class ModelVersionRef:
    """One registered model version and the run that logged it."""

    name: str
    version: str
    run_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def parse_models_uri(uri: str) -> tuple[str, str, str]:
    """``models:/name/3`` -> (name, "3", ""); ``models:/name@champion`` -> (name, "", "champion")."""
    body = uri[len("models:/") :]
    if "@" in body:
        name, alias = body.rsplit("@", 1)
        if not name or not alias:
            raise ValueError(f"bad model URI {uri!r}: expected models:/name@alias")
        return name, "", alias
    name, _, version = body.rpartition("/")
    if not name or not version.isdigit():
        raise ValueError(f"bad model URI {uri!r}: expected models:/name/<version> or models:/name@alias")
    return name, version, ""


def resolve_model_version(uri: str, tracking_uri: str | None = None) -> ModelVersionRef:
    """The version behind ``models:/name/<version>`` or ``models:/name@alias``."""
    from mlflow.exceptions import MlflowException

    name, version, alias = parse_models_uri(uri)
    client = tracking_client(tracking_uri)
    try:
        mv = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, version)
        )
    except MlflowException as exc:
        # A name, version or alias the store does not have is the user's input: one line, exit 2. Anything
        # else (the server unreachable) stays a failure of the job.
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise InputError(f"{uri}: {exc.message} (tracking store {client.tracking_uri})") from exc
        raise
    return ModelVersionRef(name, str(mv.version), mv.run_id or "")


def tag_model_version(tracking_uri: str | None, name: str, version: str, tags: Mapping[str, str]) -> None:
    client = tracking_client(tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def ready_versions(client: MlflowClient, models: list[str], alias: str) -> list[tuple[str, str]]:
    """(name, version) of READY registered versions of ``models`` (empty: every registered model), only the
    one carrying ``alias`` when given; sorted by name, then version."""
    from mlflow.exceptions import MlflowException

    names = list(models) or [m.name for m in client.search_registered_models(max_results=1000)]
    out: list[tuple[str, str]] = []
    for name in sorted(set(names)):
        if alias:
            try:
                mv = client.get_model_version_by_alias(name, alias)
            except MlflowException:
                log.info("registry: %s has no alias %r", name, alias)
                continue
            out.append((name, str(mv.version)))
            continue
        for mv in client.search_model_versions(f"name = '{name}'", max_results=10000):
            if getattr(mv, "status", "READY") == "READY":
                out.append((name, str(mv.version)))
    return sorted(out, key=lambda nv: (nv[0], int(nv[1])))
