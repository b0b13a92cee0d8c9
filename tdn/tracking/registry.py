"""The final model in the MLflow model registry, as a project checkpoint anyone can load with weights_only=True.

What is registered: an MLflow *logged model* (``model_type="tdn-checkpoint"``) whose artifacts are

    data/model.pt2  the eval-mode model in MLflow's pickle-free pt2 format (torch.export; model_export.py)
    MLmodel         flavors pytorch + python_function, signature (N, T, 5, 3, S, S) -> (N, classes),
                    metadata (class names, input shape) and a ``tdn`` section (format, checkpoint, metrics)
    class_names.json, input_example.json + .npz (a real clip when the caller gives one), requirements.txt,
                    python_env.yaml, conda.yaml (no local version labels: torch==2.13.0, not 2.13.0+cpu)
    checkpoint.pt   the project checkpoint (tdn/checkpoints/project.py format: model_config, model, class_names, ...)

and a registered model version pointing at it, tagged with its scores. The logged model's description (its
``mlflow.note.content`` tag, shown on its page) says the input layout, normalisation, classes and how to call
it (model_export.model_description); the version's and the registered model's descriptions (the input layout,
the classes, which URI to load) are descriptions.py's. To load it back::

    model = mlflow.pytorch.load_model("models:/tdn-ucf101@champion")     # no project code, no pickle
    model, ckpt = load_registered_model("models:/tdn-ucf101@champion")    # or models:/tdn-ucf101/3, runs:/...
    # = mlflow.artifacts.download_artifacts(uri) + tdn.checkpoints.project.load_model_checkpoint(".../checkpoint.pt")

``register_checkpoint(..., export=False)``, or a model that does not export (logged as a warning), registers the
checkpoint alone, as before this flavor existed: MLmodel without flavors, loadable by the project's code only.

The other registry calls: ``resolve_model_version`` (``models:/name@alias`` or ``models:/name/3`` -> the
version and its training run), ``tag_model_version`` (evaluation links a version to its latest result) and
``ready_versions`` (what re-evaluation considers). Clients come from tdn/tracking/mlflow_store.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import yaml

from pipeline.errors import InputError
from pipeline.scratch import scratch_dir
from tdn.checkpoints.project import load_checkpoint, load_model_checkpoint
from tdn.model.networks import TDNNet
from tdn.tracking.descriptions import describe_version
from tdn.tracking.mlflow_store import (
    DESCRIPTION_TAG,
    download_artifacts,
    set_global_tracking_uri,
    tracking_client,
)
from tdn.tracking.model_export import save_exported_model

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModel

    from tdn.tracking.model_export import InputExample

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_TYPE = "tdn-checkpoint"


def _tdn_section(metrics: Mapping[str, float], export_error: str) -> dict[str, Any]:
    """The MLmodel's ``tdn`` section: how the project's own code loads the model, and its scores."""
    section: dict[str, Any] = {
        "format": "tdn-checkpoint/1",
        "checkpoint": CHECKPOINT_NAME,
        "load": "tdn.tracking.registry.load_registered_model(uri) or "
        "tdn.checkpoints.project.load_model_checkpoint(path/checkpoint.pt)",
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
    if export_error:
        section["export_error"] = export_error
    return section


@dataclass(frozen=True)
class _ModelFolder:
    """What a logged model's folder is written from."""

    checkpoint_path: str
    model_id: str
    run_id: str
    metrics: Mapping[str, float]
    export: bool  # also the pt2 MLflow model (model_export.py)
    example: InputExample | None  # its input example; None: model_export's synthetic one


def _write_model_folder(staging: str, spec: _ModelFolder) -> str:
    """The logged model's files in ``staging``: the pt2 MLflow model when ``spec.export`` (and it exports),
    the checkpoint, and an MLmodel naming the logged model and its run. Returns the model's description
    ("" when not exported)."""
    checkpoint_path, model_id, run_id, metrics = (
        spec.checkpoint_path,
        spec.model_id,
        spec.run_id,
        spec.metrics,
    )
    export_error, description = "", ""
    if spec.export:
        from mlflow.models import Model

        try:
            exported = save_exported_model(checkpoint_path, staging, spec.example)
        except Exception as exc:  # noqa: BLE001 - a model that does not export is still registered
            export_error = f"{type(exc).__name__}: {str(exc)[:500]}"
            log.warning(
                "registry: %s did not export to MLflow's pt2 format; registering the checkpoint alone (%s)",
                checkpoint_path,
                export_error,
            )
            shutil.rmtree(staging, ignore_errors=True)
            os.makedirs(staging)
        else:
            log.info("registry: exported %s in %.1f s", checkpoint_path, exported.export_s)
            description = exported.description
            mlmodel = Model.load(os.path.join(staging, "MLmodel"))
            mlmodel.artifact_path, mlmodel.model_id, mlmodel.run_id = "model", model_id, run_id
            mlmodel.tdn = _tdn_section(metrics, "")  # type: ignore[attr-defined]  # saved with the rest
            mlmodel.save(os.path.join(staging, "MLmodel"))
    shutil.copyfile(checkpoint_path, os.path.join(staging, CHECKPOINT_NAME))
    if not spec.export or export_error:
        with open(os.path.join(staging, "MLmodel"), "w", encoding="utf-8") as f:
            fields = {
                "artifact_path": "model",
                "model_id": model_id,
                "run_id": run_id,
                "flavors": {},
                "tdn": _tdn_section(metrics, export_error),
            }
            yaml.safe_dump(fields, f, sort_keys=False)
    return description


class RegistrationRefused(ValueError):
    """A model that must not be registered: a weight or a score is NaN or infinite."""


def check_registrable(checkpoint_path: str, metrics: Mapping[str, float]) -> None:
    """RegistrationRefused naming the first non-finite score or weight of the checkpoint."""
    bad_scores = [k for k, v in metrics.items() if not math.isfinite(float(v))]
    if bad_scores:
        raise RegistrationRefused(
            f"{checkpoint_path}: not registered, non-finite score(s) {', '.join(bad_scores)}"
        )
    for key, tensor in load_checkpoint(checkpoint_path)["model"].items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise RegistrationRefused(
                f"{checkpoint_path}: not registered, {key} holds NaN or infinite values"
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
    export: bool = True,
    example: InputExample | None = None,
) -> str:
    """Log ``checkpoint_path`` as a logged model of run ``run_id`` and register it under ``name``.

    ``export``: also write the model in MLflow's pt2 format (mlflow.pytorch.load_model works on it); False
    logs the checkpoint alone (the tests that do not load it through MLflow, to save the export's time).
    ``example``: the pt2 model's input example (a real clip, ``model_export.InputExample``; None: a synthetic
    one, said so in the MLmodel). The model's description becomes the logged model's (its page shows it).
    ``metrics`` become tags of the logged model and the version, and the MLmodel's ``tdn.metrics``.

    Returns the version. Idempotent: a run has at most one logged model and one version of ``name``; a call
    retried after an outage, or a finished run launched again, finds them and completes what is missing
    instead of creating more. A local (sqlite) registry store resolves ``models:/<id>`` through the *global*
    tracking URI, so this sets it to the client's (the rank-0 worker logs nowhere else).
    """
    check_registrable(checkpoint_path, metrics)
    set_global_tracking_uri(client.tracking_uri)
    spec = _ModelFolder(checkpoint_path, "", run_id, metrics, export, example)
    version = _register(
        client,
        experiment_id,
        name,
        alias,
        {**(tags or {}), **{k: f"{v:.6g}" for k, v in metrics.items()}},
        spec,
    )
    describe_version(client, name, version, checkpoint_path, run_id, metrics)  # its page, and the model's
    return version


def _register(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    alias: str,
    all_tags: dict[str, str],
    spec: _ModelFolder,
) -> str:
    """register_checkpoint's calls: what the run registered already is found, not made again."""
    run_id = spec.run_id
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
    staging = scratch_dir("model")  # removed below; after a kill, by the next job (remove_abandoned)
    try:
        description = _write_model_folder(staging, dataclasses.replace(spec, model_id=logged.model_id))
        client.log_model_artifacts(logged.model_id, staging)
        if description:
            client.set_logged_model_tags(logged.model_id, {DESCRIPTION_TAG: description})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    client.finalize_logged_model(logged.model_id, "READY")
    return _register_version(client, name, run_id, logged.model_id, all_tags, alias)


def _logged_model_of_run(
    client: MlflowClient, experiment_id: str, name: str, run_id: str
) -> LoggedModel | None:
    """The run's logged model named ``name`` (READY first, else the oldest one left PENDING), or None."""
    found = client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{run_id}' AND name = '{name}'", max_results=100
    )
    models = [m for m in found if m.model_type == MODEL_TYPE]
    ready = [m for m in models if _is_ready(m)]
    pool = ready or models
    return min(pool, key=lambda m: m.creation_timestamp) if pool else None


def _is_ready(model: LoggedModel) -> bool:
    from mlflow.entities import LoggedModelStatus

    return bool(model.status == LoggedModelStatus.READY)


def _version_of_run(client: MlflowClient, name: str, run_id: str) -> str | None:
    """The lowest version of ``name`` registered from run ``run_id``, or None."""
    versions = client.search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")
    return str(min(int(v.version) for v in versions)) if versions else None


def _register_version(
    client: MlflowClient, name: str, run_id: str, model_id: str, tags: Mapping[str, str], alias: str
) -> str:
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
    _link_run_model_version(client, run_id, model_id, name, version)
    return version


def _link_run_model_version(
    client: MlflowClient, run_id: str, model_id: str, name: str, version: str
) -> None:
    """What ``mlflow.pytorch.log_model`` + ``mlflow.register_model`` record and the UI shows: the logged model
    as the run's output ("Logged models" on the run page) and the version on the logged model's page
    (its ``mlflow.modelVersions`` tag). Each is checked first, so a retry adds nothing twice."""
    from mlflow.entities import LoggedModelOutput

    run = client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs is not None else []
    if not any(o.model_id == model_id for o in outputs):
        client.log_outputs(run_id, [LoggedModelOutput(model_id, 0)])
    tag = "mlflow.modelVersions"  # mlflow.utils.mlflow_tags.MLFLOW_MODEL_VERSIONS
    listed = json.loads(client.get_logged_model(model_id).tags.get(tag, "[]"))
    if not any(e.get("name") == name and str(e.get("version")) == str(version) for e in listed):
        entry = {"name": name, "version": int(version)}  # as mlflow.register_model writes it
        client.set_logged_model_tags(model_id, {tag: json.dumps([*listed, entry])})


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


def load_registered_model(uri: str, tracking_uri: str | None = None) -> tuple[TDNNet, dict[str, Any]]:
    """(model, checkpoint dict) for a registered/logged model URI; the file is read with weights_only=True."""
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
