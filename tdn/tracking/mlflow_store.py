"""MLflow in one place: where the store is, clients, experiments, runs, and the names of the tags.

Every ``MlflowClient`` of the project is made by ``tracking_client`` and only ``set_global_tracking_uri``
sets MLflow's process-wide URI; the model registry calls (tdn/tracking/registry.py) and the queued rank-0
tracker (tdn/tracking/tracker.py) get their clients from here.

    tracking URI   given  >  MLFLOW_TRACKING_URI  >  sqlite:///mlruns/mlflow.db      resolve_tracking_uri
                   (a relative sqlite path is made absolute: Ray workers run in another folder)
    experiment     name -> id, created when missing (another process may create it first)
    one run        with logged_run(client, experiment, name, tags) as run:
                       run.log(params={...}, metrics={...}); run.log_artifact(path)
                   -> FINISHED when the block ends, FAILED when it raises
    searches       finished runs by tag across every active experiment (tables, re-evaluation)

Tags, what the runs carry and what tables and re-evaluation search by:

    tdn.kind               train | evaluation | transfer | tables
    tdn.train_run          the Ray run name: a restarted worker finds its MLflow run again by it
    tdn.transfer_id        the transfer's parent run, on its split and evaluation runs (groups Table 4)
    tdn.model_*            what an evaluation evaluated (id, registered name and version, training run)
    tdn.index_checksum     the shards it ran on; tdn.dataset / tdn.split / tdn.protocol with it
    tdn.num_videos         how many videos it scored (a counter: a tag and a param, never a metric)
    tdn.eval.<dataset>.<split>.<protocol>.<run_id|top1_pct>   on a registered version: its latest evaluation
    mlflow.source.name / .type / .git.commit, mlflow.user   MLflow's own (tdn/tracking/lineage.py)

Metric keys are ``<section>/<name>``, accuracies in percent named ``*_pct`` (docs/ARCHITECTURE.md lists them):
train/ val/ best/ on training runs, eval/ on evaluation runs, transfer/ on transfer runs.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.errors import InputError
from tdn.tracking.lineage import DatasetRef, ShardDataset

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
NO_TRACKING = "none"  # --tracking-uri none: no MLflow at all (nothing logged, registered or read)
_SQLITE = "sqlite:///"

# MLflow's limits: characters of one param value; params / metrics per log_batch request (REST API).
PARAM_VALUE_LIMIT = 6000
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000

# ---- tag names
KIND_TAG = "tdn.kind"
KIND_TRAIN = "train"
KIND_EVALUATION = "evaluation"
KIND_TRANSFER = "transfer"
KIND_TABLES = "tables"
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's own: the UI nests the run under this one
DESCRIPTION_TAG = "mlflow.note.content"  # MLflow's own: a run's (or logged model's) description, Markdown
TRAIN_RUN_TAG = "tdn.train_run"
TRANSFER_TAG = "tdn.transfer_id"
# training runs
TRAIN_INDEX_CHECKSUM_TAG = "tdn.train_index_checksum"
WORLD_SIZE_TAG = "tdn.world_size"
RESUMED_FROM_TAG = "tdn.resumed_from"
STOP_REASON_TAG = "tdn.stop_reason"  # why a training run ended KILLED (a signal to its driver)
FAILURE_TAG = "tdn.failure"  # why a training run ended FAILED (a bad input, a diverged loss)
GIT_COMMIT_TAG = "tdn.git_commit"
# evaluation runs
MODEL_ID_TAG = "tdn.model_id"
MODEL_NAME_TAG = "tdn.model_name"
MODEL_VERSION_TAG = "tdn.model_version"
MODEL_RUN_ID_TAG = "tdn.model_run_id"
INDEX_CHECKSUM_TAG = "tdn.index_checksum"
DATASET_TAG = "tdn.dataset"
SPLIT_TAG = "tdn.split"
PROTOCOL_TAG = "tdn.protocol"
ENSEMBLE_OF_TAG = "tdn.ensemble_of"
TRIGGER_TAG = "tdn.trigger"  # what started an evaluation, e.g. "reevaluate"
NUM_VIDEOS_TAG = "tdn.num_videos"
VAL_SAMPLES_TAG = "tdn.val_samples"  # training runs: samples of a validation pass (a counter)
# transfer split runs
SPLIT_NUMBER_TAG = "tdn.split_number"
EVAL_RUN_ID_TAG = "tdn.eval_run_id"


def version_model_id(model_id: str | None, source: str) -> str:
    """The logged model behind a registered version: its ``model_id``, which MLflow 3.17's sqlite/REST stores
    leave empty when reading a version back, else the id in its source ``models:/m-<id>``; "" if neither."""
    if model_id:
        return model_id
    body = source.removeprefix("models:/") if source.startswith("models:/") else ""
    return body if body.startswith("m-") and "/" not in body else ""


def eval_version_tag(dataset: str, split: str, protocol: str, field: str) -> str:
    """Tag of a registered model version naming its latest evaluation on (dataset, split, protocol)."""
    return f"tdn.eval.{dataset}.{split}.{protocol}.{field}"


# ----------------------------------------------------------------------------------------------- store


def resolve_tracking_uri(uri: str = "") -> str:
    """``uri``, else MLFLOW_TRACKING_URI, else the local sqlite store (a relative path made absolute).
    ``none`` is an InputError: the caller needs MLflow (a job that can do without calls ``optional_tracking_uri``)."""
    if tracking_off(uri):
        raise InputError(
            f"--tracking-uri {uri}: this job reads or writes MLflow runs and needs a tracking store (leave it "
            "empty for the local sqlite:///mlruns/mlflow.db, or give a URI)"
        )
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith(_SQLITE) and not uri[len(_SQLITE) :].startswith("/"):
        uri = _SQLITE + os.path.abspath(uri[len(_SQLITE) :])
    return uri


def tracking_off(uri: str) -> bool:
    """``--tracking-uri none``: the job runs without MLflow."""
    return uri.strip().lower() == NO_TRACKING


def optional_tracking_uri(uri: str = "") -> str | None:
    """resolve_tracking_uri, or None for ``none`` (the job runs without MLflow)."""
    return None if tracking_off(uri) else resolve_tracking_uri(uri)


def make_sqlite_folder(uri: str) -> None:
    """Create the folder of a ``sqlite:///`` store (MLflow creates the file, not its folder)."""
    if uri.startswith(_SQLITE):
        folder = os.path.dirname(uri[len(_SQLITE) :])
        if folder:
            os.makedirs(folder, exist_ok=True)


def tracking_client(tracking_uri: str | None = None) -> MlflowClient:
    """A client of ``tracking_uri`` (None: MLflow's own default, i.e. the global URI or the environment)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def set_global_tracking_uri(tracking_uri: str | None) -> None:
    """Set MLflow's process-wide URI, which a local (sqlite) registry resolves ``models:/<id>`` through and
    ``mlflow.artifacts`` reads; None goes back to MLflow's default."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)  # type: ignore[arg-type]  # typed str | Path, but None resets it


def local_artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Where a sqlite store keeps an experiment's artifacts: ``<database folder>/artifacts/<experiment>``,
    an absolute path fixed when the experiment is made. MLflow's own default is ``./mlruns`` of the process
    that makes it, which for a Ray Train worker is a folder under /tmp/ray. None for other stores: a server
    decides itself, a file store keeps them in its own folder."""
    uri = resolve_tracking_uri(tracking_uri)
    if not uri.startswith(_SQLITE):
        return None
    database = uri[len(_SQLITE) :].split("?", 1)[0]
    if not database or database == ":memory:":
        return None
    folder = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._") or "experiment"
    if folder != experiment:  # two names made alike keep apart
        folder += "-" + hashlib.sha1(experiment.encode("utf-8")).hexdigest()[:8]
    return os.path.join(os.path.dirname(os.path.abspath(database)), "artifacts", folder)


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created when missing (a sqlite store's with its artifacts beside the
    database, ``local_artifact_location``)."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = local_artifact_location(client.tracking_uri, name)
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except MlflowException:
        exp = client.get_experiment_by_name(name)  # another process created it in between
        if exp is None:
            raise
        return str(exp.experiment_id)


def download_run_artifact(run_id: str, artifact_path: str, dst_path: str, tracking_uri: str | None) -> str:
    """Local path of one artifact of a run, downloaded into ``dst_path``."""
    import mlflow.artifacts

    return mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=artifact_path, dst_path=dst_path, tracking_uri=tracking_uri
    )


def download_artifacts(artifact_uri: str) -> str:
    """Local path of ``models:/...`` or ``runs:/...`` (resolved through the global tracking URI)."""
    import mlflow.artifacts

    return mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri)


# ----------------------------------------------------------------------------------------------- runs


@dataclass
class LoggedRun:
    """One MLflow run written through an explicit client: it never touches the process's active run
    (transfer logs evaluation runs as children of its own)."""

    client: MlflowClient
    run_id: str
    experiment_id: str

    def log(
        self,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        step: int = 0,
        model_id: str = "",
        dataset: DatasetRef | None = None,
    ) -> None:
        """Params (as text, cut at MLflow's limit) and metrics at ``step``, in as few requests as fit.

        ``model_id``: the MLflow logged model the metrics measure (its page then lists them); ``dataset``:
        the split they were measured on."""
        from mlflow.entities import Metric, Param

        plist = [Param(k, str(v)[:PARAM_VALUE_LIMIT]) for k, v in (params or {}).items()]
        stamp = int(time.time() * 1000)
        name, digest = (dataset.name, dataset.digest) if dataset is not None else (None, None)
        mlist = [
            Metric(
                k, float(v), stamp, step, model_id=model_id or None, dataset_name=name, dataset_digest=digest
            )
            for k, v in (metrics or {}).items()
        ]
        while plist or mlist:
            self.client.log_batch(
                self.run_id, metrics=mlist[:METRICS_PER_BATCH], params=plist[:PARAMS_PER_BATCH]
            )
            plist, mlist = plist[PARAMS_PER_BATCH:], mlist[METRICS_PER_BATCH:]

    def log_metric(self, key: str, value: float) -> None:
        self.client.log_metric(self.run_id, key, value)

    def log_inputs(self, datasets: Sequence[ShardDataset], model_ids: Sequence[str] = ()) -> None:
        """Shard splits as dataset inputs, and logged models (by id) as model inputs of the run."""
        from mlflow.entities import LoggedModelInput

        self.client.log_inputs(
            self.run_id,
            datasets=[d.to_input() for d in datasets],
            models=[LoggedModelInput(m) for m in model_ids] or None,
        )

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, local_path, artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


def create_run(
    client: MlflowClient,
    experiment_id: str,
    run_name: str,
    tags: Mapping[str, str],
    start_time_ms: int | None = None,
) -> LoggedRun:
    """A new RUNNING run (started at ``start_time_ms``, default now); whoever creates it ends it with ``finish``."""
    run = client.create_run(experiment_id, start_time=start_time_ms, tags=dict(tags), run_name=run_name[:250])
    return LoggedRun(client, run.info.run_id, experiment_id)


@contextmanager
def logged_run(
    client: MlflowClient, experiment: str, run_name: str, tags: Mapping[str, str]
) -> Iterator[LoggedRun]:
    """A run in ``experiment`` (created when missing): FINISHED after the block, FAILED if it raises."""
    run = create_run(client, get_or_create_experiment(client, experiment), run_name, tags)
    try:
        yield run
    except BaseException:
        run.finish("FAILED")
        raise
    run.finish("FINISHED")


def find_run_by_tag(client: MlflowClient, experiment_id: str, tag: str, value: str) -> Run | None:
    """The run of ``experiment_id`` carrying ``tag = value``, if any."""
    found = client.search_runs([experiment_id], filter_string=f"tags.`{tag}` = '{value}'", max_results=1)
    return found[0] if found else None


def open_train_run(
    client: MlflowClient, experiment: str, run_key: str, run_name: str, reopen: bool
) -> tuple[str, str]:
    """(run id, experiment id) of the training run tagged ``tdn.train_run = run_key``, created when missing;
    ``reopen`` sets an ended one RUNNING again (a restarted worker), a journal replay leaves it as it is."""
    experiment_id = get_or_create_experiment(client, experiment)
    found = find_run_by_tag(client, experiment_id, TRAIN_RUN_TAG, run_key)
    if found is not None:
        if reopen and found.info.status != "RUNNING":
            client.update_run(found.info.run_id, status="RUNNING")
        return found.info.run_id, experiment_id
    run = client.create_run(experiment_id, run_name=run_name[:250], tags={TRAIN_RUN_TAG: run_key})
    return run.info.run_id, experiment_id


def search_runs_everywhere(
    client: MlflowClient, filter_string: str, max_results: int | None = None
) -> list[Run]:
    """Runs matching ``filter_string`` in every active experiment: all pages, or the first ``max_results``."""
    from mlflow.entities import ViewType

    exp_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    runs: list[Run] = []
    if not exp_ids:
        return runs
    token = None
    while True:
        page = client.search_runs(
            exp_ids, filter_string=filter_string, max_results=min(max_results or 1000, 1000), page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token or (max_results is not None and len(runs) >= max_results):
            return runs if max_results is None else runs[:max_results]
