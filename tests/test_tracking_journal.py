"""Nothing MLflow should have is lost or logged twice (issue 14, item 5), against a real ``mlflow server``:

- the server is down when training ends: the unsent calls go to a journal, ``jobs/replay_tracking.py`` sends
  them later, exactly once however often it runs, and ends the run;
- an outage in the middle of the model registration, and a finished run launched again, give one logged model
  and one registered version.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tdn.tracking.journal import JOURNAL_FILE, pending_operations, read_journal
from tdn.tracking.lineage import DatasetRef, ShardDataset
from tdn.tracking.mlflow_store import TRAIN_RUN_TAG, get_or_create_experiment, tracking_client
from tdn.tracking.operations import EndRun, LogArtifact, LogInputs, LogMetrics, RegisterModel
from tdn.tracking.registry import register_checkpoint
from tdn.tracking.tracker import Tracker, TrackingConfig


def _checkpoint(path: Path) -> str:
    from tdn.checkpoints.project import TrainingState, save_checkpoint
    from tdn.model.networks import ModelConfig, build_model_from_config

    cfg = ModelConfig(arch="resnet18", num_classes=3, num_segments=2, width=0.125)
    save_checkpoint(
        str(path),
        build_model_from_config(cfg),
        cfg,
        ["a", "b", "c"],
        TrainingState(epoch=1, step=4, metrics={"val_top1": 0.5}),
    )
    return str(path)


def _cfg(uri: str, experiment: str, **kw) -> TrackingConfig:
    return TrackingConfig(uri=uri, experiment=experiment, max_backoff_s=1.0, **kw)


def _the_run(client, experiment: str, key: str):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{TRAIN_RUN_TAG}` = '{key}'")
    assert len(runs) == 1, f"expected one run tagged {key}, found {len(runs)}"
    return runs[0]


def _registered(client, name: str, run_id: str, experiment_id: str) -> tuple[list[str], int]:
    """(versions of ``name`` from the run, logged models of the run)."""
    versions = [v.version for v in client.search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")]
    models = client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'")
    return versions, len(models)


def test_calls_unsent_at_the_end_go_to_a_journal_and_replay_sends_each_once(mlflow_server, tmp_path, capsys):
    from jobs.replay_tracking import main as replay_main

    experiment, key, name = "journal-test", "journal-1", "tdn-journal"
    work = tmp_path / "work"
    work.mkdir()
    config = work / "config.yaml"
    config.write_text("model:\n  arch: resnet18\n")
    ckpt = _checkpoint(work / "checkpoint.pt")
    journal_dir = tmp_path / "ray" / key / "mlflow-journal"
    tracker = Tracker(
        _cfg(mlflow_server.uri, experiment, flush_timeout_s=3.0), run_key=key, journal_dir=str(journal_dir)
    )
    tracker.log_params({"optim.lr": 0.01})
    tracker.log_metrics({"loss": 1.0}, step=1)
    assert tracker.flush(timeout_s=60)
    mlflow_server.stop()
    try:
        for step in range(2, 6):
            tracker.log_metrics({"loss": 1.0 / step}, step=step)
        tracker.log_inputs([ShardDataset("synthetic/test", "e" * 36, "s3://b/test", "validation", 40)])
        tracker.log_metrics({"val/top1_pct": 75.0}, step=5, dataset=DatasetRef("synthetic/test", "e" * 36))
        tracker.log_artifact(str(config))
        tracker.log_artifact(ckpt, "checkpoint")
        tracker.register_model(ckpt, name, {"val_top1": 0.5}, alias="journal")
        tracker.close()  # the server stays down past flush_timeout_s
    finally:
        mlflow_server.start()
    shutil.rmtree(work)  # the worker's temporary folder is gone: the journal keeps its own copies

    journal = str(journal_dir / JOURNAL_FILE)
    assert tracker.dropped == 0 and tracker.journal == journal and tracker.pending >= 4
    assert pending_operations(journal) == tracker.pending
    kept = read_journal(journal)
    assert kept.header.run_key == key and kept.header.run_id == tracker.run_id
    assert isinstance(kept.operations[-1], EndRun) and kept.operations[-1].status == "FINISHED"
    assert any(isinstance(op, RegisterModel) for op in kept.operations)
    assert [op.datasets for op in kept.operations if isinstance(op, LogInputs)] == [
        [ShardDataset("synthetic/test", "e" * 36, "s3://b/test", "validation", 40)]
    ]
    items = [i for op in kept.operations if isinstance(op, LogMetrics) for i in op.items]
    val_items = [i for i in items if i.key == "val/top1_pct"]
    assert [(i.dataset_name, i.dataset_digest) for i in val_items] == [("synthetic/test", "e" * 36)]
    assert all(
        (journal_dir / op.local_path).is_file() for op in kept.operations if isinstance(op, LogArtifact)
    )
    client = tracking_client(mlflow_server.uri)
    assert client.get_run(tracker.run_id).info.status == "RUNNING"  # the server was down: replay ends it

    for attempt in range(2):  # a second replay logs nothing twice
        assert replay_main([journal, "--json"]) == 0, capsys.readouterr().err
        report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert report["run_id"] == tracker.run_id and report["status"] == "FINISHED"
        assert pending_operations(journal) == 0
        run = _the_run(client, experiment, key)
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted(m.step for m in history) == [1, 2, 3, 4, 5], attempt
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "checkpoint"} <= artifacts
        assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == [
            "checkpoint/checkpoint.pt"
        ]
        versions, models = _registered(client, name, run.info.run_id, run.info.experiment_id)
        assert len(versions) == 1 and models == 1, (attempt, versions, models)
        assert client.get_model_version_by_alias(name, "journal").version == versions[0]
        assert run.data.params["optim.lr"] == "0.01" and run.info.status == "FINISHED"
        (given,) = run.inputs.dataset_inputs  # sent once however often the journal is replayed
        assert (given.dataset.name, given.tags[0].value) == ("synthetic/test", "validation")


def test_replay_of_a_missing_or_foreign_file_is_one_line_exit_2(tmp_path, capsys):
    from jobs.replay_tracking import main as replay_main

    assert replay_main([str(tmp_path / "nope.jsonl")]) == 2
    foreign = tmp_path / "journal.jsonl"
    foreign.write_text('{"hello": 1}\n')
    assert replay_main([str(foreign)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("replay_tracking: error: ") for line in err)
    assert "nope.jsonl" in err[0] and "not an MLflow journal" in err[1]


class _Interrupted:
    """A real client whose ``create_model_version`` meets an outage: ``"before"`` the server is stopped
    before the request reaches it, ``"after"`` the version is created and the answer is lost."""

    def __init__(self, client, server, when: str) -> None:
        self._client, self._server, self._when = client, server, when

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    def create_model_version(self, *args, **kwargs):
        if self._when == "before":
            self._server.stop()
            return self._client.create_model_version(*args, **kwargs)  # connection refused
        self._client.create_model_version(*args, **kwargs)
        raise ConnectionError("the answer was lost")


@pytest.mark.parametrize("when", ["after", "before"])
def test_registration_retried_after_an_outage_registers_once(mlflow_server, tmp_path, when, monkeypatch):
    # as the Tracker sets it: a refused connection fails at once instead of after MLflow's own ~4 min of retries
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    ckpt = _checkpoint(tmp_path / "checkpoint.pt")
    client = tracking_client(mlflow_server.uri)
    experiment_id = get_or_create_experiment(client, "registry-outage")
    run_id = client.create_run(experiment_id, run_name=f"outage-{when}").info.run_id
    name = f"tdn-outage-{when}"
    try:
        with pytest.raises(Exception):  # noqa: B017 - a refused connection or the lost answer
            register_checkpoint(
                _Interrupted(client, mlflow_server, when),
                run_id,
                experiment_id,
                ckpt,
                name,
                {"val_top1": 0.5},
                alias="champion",
                export=False,
            )
    finally:
        mlflow_server.start() if mlflow_server.proc.poll() is not None else None
    # the tracker retries the whole call once the server answers again
    version = register_checkpoint(
        client, run_id, experiment_id, ckpt, name, {"val_top1": 0.5}, alias="champion", export=False
    )
    versions, models = _registered(client, name, run_id, experiment_id)
    assert versions == [version] and models == 1
    assert client.get_model_version_by_alias(name, "champion").version == version
    assert client.get_model_version(name, version).tags["val_top1"] == "0.5"


def test_a_finished_run_launched_again_registers_no_duplicate(mlflow_server, tmp_path):
    """The same run name launched again finds its MLflow run (tag tdn.train_run) and its registered model."""
    experiment, key, name = "rerun-test", "rerun-1", "tdn-rerun"
    for launch in range(2):  # the re-launch resumes from its final checkpoint: another copy of the same file
        ckpt = _checkpoint(tmp_path / f"launch-{launch}.pt")
        tracker = Tracker(_cfg(mlflow_server.uri, experiment), run_key=key)
        tracker.log_params({"optim.lr": 0.01})
        tracker.register_model(ckpt, name, {"val_top1": 0.5}, alias="current")
        tracker.close()
        assert tracker.dropped == 0 and tracker.rejected == 0
    client = tracking_client(mlflow_server.uri)
    run = _the_run(client, experiment, key)
    versions, models = _registered(client, name, run.info.run_id, run.info.experiment_id)
    assert len(versions) == 1 and models == 1
    assert len(client.search_model_versions(f"name = '{name}'")) == 1
    assert run.info.status == "FINISHED"


@pytest.mark.integration
def test_train_job_with_mlflow_down_exits_1_and_the_replay_completes_the_run(
    ray_cluster, synthetic_shards, tmp_path, capsys
):
    """The whole path: training ends while the tracking server is down -> journal beside the checkpoints, one
    line and exit 1; the server comes up -> replay -> the run, its artifacts and its model are all there."""
    from jobs.replay_tracking import main as replay_main
    from jobs.train import main as train_main
    from tests.services import MlflowServer, free_port

    port = free_port()  # nothing listens there until the replay
    recipe = Path(__file__).resolve().parent.parent / "jobs" / "configs" / "synthetic_tiny.yaml"
    rc = train_main(
        [
            "--config",
            str(recipe),
            "--data.shards",
            str(synthetic_shards),
            "--run.storage_path",
            str(tmp_path / "ray"),
            "--name",
            "journal-train",
            "--tracking-uri",
            f"http://127.0.0.1:{port}",
            "--optim.epochs",
            "1",
            *("--model.variant", "tsn", "--loader.input_size", "32", "--loader.batch_size", "8"),  # cheap
            "--tracking.flush_timeout_s",
            "2",
            "--tracking.request_timeout_s",
            "1",
            "--run.workers",
            "1",
            "--tracking.export_model",
            "false",  # the pt2 export has its own test (test_model_export.py)
        ]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train: ")]
    journal = tmp_path / "ray" / "journal-train" / "mlflow-journal" / JOURNAL_FILE
    assert rc == 1 and len(err) == 1 and "train: failed: " in err[0] and str(journal) in err[0], err
    assert pending_operations(str(journal)) > 0
    server = MlflowServer(tmp_path / "mlflow", port=port).start()
    try:
        assert replay_main([str(journal)]) == 0, capsys.readouterr().err
        client = tracking_client(server.uri)
        run = _the_run(client, "tdn-synthetic", "journal-train")
        assert run.info.status == "FINISHED" and "loss/train" in run.data.metrics
        assert {"config.yaml", "per_class_accuracy.csv", "checkpoint"} <= {
            a.path for a in client.list_artifacts(run.info.run_id)
        }
        versions, models = _registered(client, "tdn-synthetic", run.info.run_id, run.info.experiment_id)
        assert versions == ["1"] and models == 1
    finally:
        server.stop()
