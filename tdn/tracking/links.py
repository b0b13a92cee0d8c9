"""Where to look at a run or a model version in MLflow's UI, as lines a job's summary prints.

    run_link(tracking_uri, run_id)            http://mlflow:5000/#/experiments/3/runs/<run id>
    model_link(tracking_uri, name, version)   http://mlflow:5000/#/models/<name>/versions/<version>
    ui_items(tracking_uri)                    a local store (sqlite, a folder) has no server: one summary item
                                              with the command that serves it, ``.venv/bin/mlflow ui
                                              --backend-store-uri sqlite:////abs/mlflow.db``; the links are
                                              then pages of http://127.0.0.1:5000 (its default port)
    find_train_run(tracking_uri, experiment, run_key)   a training run by its Ray run name + its versions

The experiment id is read from the store when not given; if the store does not answer, the link names the
run id and the store instead.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pipeline.summary import Item
from tdn.tracking.mlflow_store import TRAIN_RUN_TAG, find_run_by_tag, resolve_tracking_uri, tracking_client

LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default


def mlflow_command() -> str:
    """The ``mlflow`` beside this Python (``.venv/bin/mlflow`` from the checkout), else plain ``mlflow``."""
    exe = Path(sys.executable).with_name("mlflow")
    if not exe.is_file():
        return "mlflow"
    try:
        relative = os.path.relpath(exe)
    except ValueError:  # another drive (Windows)
        return str(exe)
    return str(exe) if relative.startswith("..") else relative


def ui_command(tracking_uri: str) -> str:
    """The command that serves a local store's UI; "" for a tracking server (its address is the UI)."""
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://", "databricks")):
        return ""
    return f"{mlflow_command()} ui --backend-store-uri {uri}"


def ui_items(tracking_uri: str) -> list[Item]:
    """The summary's "MLflow UI" item for a local store (none for a server)."""
    command = ui_command(tracking_uri)
    return [Item("MLflow UI", f"{command}   (serves the links above)")] if command else []


def _page(tracking_uri: str, path: str) -> str:
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/{path}"
    if uri.startswith("databricks"):
        return f"#/{path} in {uri}"
    return f"{LOCAL_UI}/#/{path}"


def run_link(tracking_uri: str, run_id: str, experiment_id: str = "") -> str:
    """The run's page (its experiment read from the store when not given)."""
    if not experiment_id:
        try:
            client = tracking_client(resolve_tracking_uri(tracking_uri))
            experiment_id = client.get_run(run_id).info.experiment_id
        except Exception:  # noqa: BLE001 - a link is a courtesy: the store may be gone by now
            return f"run {run_id} in {resolve_tracking_uri(tracking_uri)}"
    return _page(tracking_uri, f"experiments/{experiment_id}/runs/{run_id}")


def model_link(tracking_uri: str, name: str, version: str) -> str:
    """A registered model version's page."""
    return _page(tracking_uri, f"models/{quote(name, safe='')}/versions/{version}")


@dataclass(frozen=True)
class TrainRunRef:
    """A training run found by its Ray run name, and the model versions registered from it."""

    run_id: str
    experiment_id: str
    versions: tuple[tuple[str, str], ...]  # (registered name, version)


def find_train_run(tracking_uri: str, experiment: str, run_key: str) -> TrainRunRef | None:
    """The MLflow run tagged ``tdn.train_run = run_key`` in ``experiment``; None when there is none or the
    store does not answer (a summary line is not worth failing a finished training for)."""
    try:
        client = tracking_client(resolve_tracking_uri(tracking_uri))
        exp = client.get_experiment_by_name(experiment)
        run = find_run_by_tag(client, exp.experiment_id, TRAIN_RUN_TAG, run_key) if exp is not None else None
        if run is None:
            return None
        found = client.search_model_versions(f"run_id = '{run.info.run_id}'")
    except Exception:  # noqa: BLE001 - see the docstring
        return None
    versions = tuple(sorted((v.name, str(v.version)) for v in found))
    return TrainRunRef(run.info.run_id, str(run.info.experiment_id), versions)
