"""The calls the rank-0 tracker sends to MLflow, as typed records that can be queued, written to a journal and
sent again later without logging anything twice.

    LogParams     params of the run            again: only those the run does not have yet
    SetTags       tags                         (setting a tag twice is harmless)
    LogMetrics    MetricItem (key, value, timestamp ms, step[, dataset name, digest]) items
                                               again: only items whose (key, step) is not there yet
    LogInputs     shard splits as the run's dataset inputs (tdn/tracking/lineage.py)
                                               (MLflow keeps one input per dataset and run: again is harmless)
    LogArtifact   a local file -> the run's artifacts [under artifact_path]
                                               again: skipped when a file of that name and size is there
    RegisterModel a checkpoint as the run's logged model + registered version (registry.register_checkpoint,
                                               which finds what the run already registered before creating)
    EndRun        the run's final status (FINISHED / FAILED / KILLED)

``op.send(client, target, again)``: ``again`` is True when the call may have reached MLflow before (a retry
after a failed attempt, a replay of the journal). ``op.to_dict()`` / ``operation_from_dict(d, source)`` are the
journal's line format (tdn/tracking/journal.py); ``source`` names the file in errors.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from tdn.tracking.lineage import ShardDataset
from tdn.tracking.mlflow_store import METRICS_PER_BATCH, PARAM_VALUE_LIMIT, PARAMS_PER_BATCH
from tdn.tracking.model_export import InputExample
from tdn.tracking.registry import register_checkpoint

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


class MetricItem(NamedTuple):
    """One metric value; ``dataset_name`` / ``dataset_digest``: the split it was measured on ("" = none)."""

    key: str
    value: float
    timestamp: int  # ms since the epoch
    step: int
    dataset_name: str = ""
    dataset_digest: str = ""


@dataclass(frozen=True)
class RunTarget:
    """The MLflow run the calls go to."""

    run_id: str
    experiment_id: str


@dataclass
class LogParams:
    params: dict[str, str]

    def send(self, client: MlflowClient, target: RunTarget, again: bool) -> None:
        from mlflow.entities import Param

        have = client.get_run(target.run_id).data.params if again else {}
        plist = [Param(k, v[:PARAM_VALUE_LIMIT]) for k, v in self.params.items() if k not in have]
        for i in range(0, len(plist), PARAMS_PER_BATCH):
            try:
                client.log_batch(target.run_id, params=plist[i : i + PARAMS_PER_BATCH])
            except Exception as exc:  # noqa: BLE001
                # a resumed run logs the same params again; MLflow rejects only *changed* values
                if "INVALID_PARAMETER_VALUE" not in str(exc):
                    raise
                log.warning("mlflow: some params were not (re)logged: %s", str(exc)[:300])

    def to_dict(self) -> dict[str, Any]:
        return {"op": "params", "params": dict(self.params)}


@dataclass
class SetTags:
    tags: dict[str, str]

    def send(self, client: MlflowClient, target: RunTarget, again: bool) -> None:
        from mlflow.entities import RunTag

        client.log_batch(target.run_id, tags=[RunTag(k, v) for k, v in self.tags.items()])

    def to_dict(self) -> dict[str, Any]:
        return {"op": "tags", "tags": dict(self.tags)}


@dataclass
class LogMetrics:
    items: list[MetricItem] = field(default_factory=list)

    def send(self, client: MlflowClient, target: RunTarget, again: bool) -> None:
        from mlflow.entities import Metric

        items = self.items
        if again:  # one value per (key, step): a replayed or re-run step keeps the value logged first
            seen = {
                (m.key, m.step)
                for key in {i.key for i in items}
                for m in client.get_metric_history(target.run_id, key)
            }
            items = [i for i in items if (i.key, i.step) not in seen]
        metrics = [
            Metric(
                i.key,
                i.value,
                i.timestamp,
                i.step,
                dataset_name=i.dataset_name or None,
                dataset_digest=i.dataset_digest or None,
            )
            for i in items
        ]
        for i in range(0, len(metrics), METRICS_PER_BATCH):
            client.log_batch(target.run_id, metrics=metrics[i : i + METRICS_PER_BATCH])

    def to_dict(self) -> dict[str, Any]:
        return {"op": "metrics", "items": [list(i) for i in self.items]}


@dataclass
class LogInputs:
    datasets: list[ShardDataset]

    def send(self, client: MlflowClient, target: RunTarget, again: bool) -> None:
        client.log_inputs(target.run_id, datasets=[d.to_input() for d in self.datasets])

    def to_dict(self) -> dict[str, Any]:
        return {"op": "inputs", "datasets": [d.to_dict() for d in self.datasets]}


@dataclass
class LogArtifact:
    local_path: str
    artifact_path: str = ""

    def send(self, client: MlflowClient, target: RunTarget, again: bool) -> None:
        if again:
            name = (
                os.path.join(self.artifact_path, os.path.basename(self.local_path))
                if self.artifact_path
                else os.path.basename(self.local_path)
            )
            size = os.path.getsize(self.local_path)
            listed = client.list_artifacts(target.run_id, self.artifact_path or None)
            if any(f.path == name and f.file_size == size for f in listed):
                return
        client.log_artifact(target.run_id, self.local_path, self.artifact_path or None)

    def to_dict(self) -> dict[str, Any]:
        return {"op": "artifact", "local_path": self.local_path, "artifact_path": self.artifact_path}


@dataclass
class RegisterModel:
    checkpoint_path: str
    name: str
    metrics: dict[str, float]
    alias: str = ""
    export: bool = True  # also save the pt2 model for mlflow.pytorch.load_model (tracking/model_export.py)
    example_path: str = ""  # model_export.InputExample .npz: a real clip for the model's input example

    def send(self, client: MlflowClient, target: RunTarget, again: bool) -> None:
        example = InputExample.load(self.example_path) if self.example_path else None
        version = register_checkpoint(
            client,
            target.run_id,
            target.experiment_id,
            self.checkpoint_path,
            self.name,
            self.metrics,
            self.alias,
            export=self.export,
            example=example,
        )
        log.warning("mlflow: registered %s version %s", self.name, version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": "register",
            "checkpoint_path": self.checkpoint_path,
            "name": self.name,
            "metrics": dict(self.metrics),
            "alias": self.alias,
            "export": self.export,
            "example_path": self.example_path,
        }


@dataclass
class EndRun:
    status: str  # FINISHED | FAILED | KILLED

    def send(self, client: MlflowClient, target: RunTarget, again: bool) -> None:
        client.set_terminated(target.run_id, self.status)

    def to_dict(self) -> dict[str, Any]:
        return {"op": "end", "status": self.status}


Operation = LogParams | SetTags | LogMetrics | LogInputs | LogArtifact | RegisterModel | EndRun


def operation_from_dict(data: dict[str, Any], source: str) -> Operation:
    """One journal line back to its operation; ValueError naming ``source`` for anything else."""
    kind = data.get("op")
    try:
        if kind == "params":
            return LogParams({str(k): str(v) for k, v in data["params"].items()})
        if kind == "tags":
            return SetTags({str(k): str(v) for k, v in data["tags"].items()})
        if kind == "metrics":
            # items of journals written before issue 15 have no dataset (4 fields)
            return LogMetrics([_metric_item(item) for item in data["items"]])
        if kind == "inputs":
            return LogInputs([ShardDataset.from_dict(d) for d in data["datasets"]])
        if kind == "artifact":
            return LogArtifact(str(data["local_path"]), str(data["artifact_path"]))
        if kind == "register":
            metrics = {str(k): float(v) for k, v in data["metrics"].items()}
            # journals written before issue 15 have no "export": those registrations exported nothing either
            export = bool(data.get("export", False))
            example = str(data.get("example_path", ""))  # journals written before it have none
            return RegisterModel(
                str(data["checkpoint_path"]), str(data["name"]), metrics, str(data["alias"]), export, example
            )
        if kind == "end":
            return EndRun(str(data["status"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{source}: malformed {kind!r} entry: {exc!r}") from exc
    raise ValueError(f"{source}: unknown journal entry {kind!r}")


def _metric_item(item: list[Any]) -> MetricItem:
    key, value, stamp, step, *dataset = item
    if len(dataset) not in (0, 2):
        raise ValueError(f"metric item with {len(item)} fields")
    return MetricItem(str(key), float(value), int(stamp), int(step), *(str(d) for d in dataset))
