"""The durable journal of MLflow calls a training run could not send, and its replay.

When the tracking server is still unreachable ``flush_timeout_s`` after training ends, the rank-0 tracker
(tdn/tracking/tracker.py) writes what is left in its queue beside the run's checkpoints::

    <storage_path>/<run name>/mlflow-journal/journal.jsonl    JSON lines: a header, then one call per line
    <storage_path>/<run name>/mlflow-journal/files/...        copies of the files those calls upload

The file is rewritten whole under a temporary name, fsync'd and renamed (one PUT on S3), so it is either the
old or the new journal, never half of one. ``python -m jobs.replay_tracking <journal>`` sends every call again
(tdn/tracking/operations.py: nothing is logged twice, so a replay may be repeated or interrupted), ends the
run with the recorded status and appends a ``replayed`` line; ``pending_operations`` counts the calls after
the last such line (jobs/train.py reports them and exits 1).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from pipeline import storage
from pipeline.scratch import scratch_dir
from tdn.tracking.mlflow_store import make_sqlite_folder, open_train_run, tracking_client
from tdn.tracking.operations import (
    LogArtifact,
    Operation,
    RegisterModel,
    RunTarget,
    operation_from_dict,
)

JOURNAL_SCHEMA = "tdn-mlflow-journal/1"
JOURNAL_FOLDER = "mlflow-journal"
JOURNAL_FILE = "journal.jsonl"
_REPLAYED = "replayed"


@dataclass(frozen=True)
class JournalHeader:
    """Where the calls were going: the store, the experiment and the training run (found by its run key)."""

    tracking_uri: str
    experiment: str
    run_key: str
    run_name: str
    run_id: str = ""  # empty when the run was never created (server down from the start)


@dataclass(frozen=True)
class Journal:
    header: JournalHeader
    operations: list[Operation]
    replayed: int  # operations sent by the last complete replay


@dataclass(frozen=True)
class ReplayReport:
    run_id: str
    operations: int
    status: str  # the run's status after the replay


def journal_uri(run_folder: str) -> str:
    """The journal of the training run whose Ray folder is ``run_folder``."""
    return storage.join(run_folder, JOURNAL_FOLDER, JOURNAL_FILE)


def write_journal(folder: str, header: JournalHeader, operations: Sequence[Operation]) -> str:
    """Add ``operations`` to ``folder``'s journal (created with ``header``); returns the journal's URI.

    The files of LogArtifact / RegisterModel are copied into ``folder/files/`` first (the originals live in
    a temporary folder) and recorded relative to ``folder``.
    """
    uri = storage.join(folder, JOURNAL_FILE)
    old = read_journal(uri) if storage.exists(uri) else None
    if old is not None and (old.header.run_id or not header.run_id):
        header = old.header
    lines = [json.dumps({"schema": JOURNAL_SCHEMA, **asdict(header)})]
    if old is not None:
        lines += _existing_lines(uri)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    copied: dict[str, str] = {}

    def keep(path: str) -> str:
        if path not in copied:
            rel = f"files/{stamp}-{len(copied)}/{os.path.basename(path)}"  # the name is the artifact's
            storage.upload_file_atomic(path, storage.join(folder, rel))
            copied[path] = rel
        return copied[path]

    for op in operations:
        if isinstance(op, LogArtifact):
            op = replace(op, local_path=keep(op.local_path))
        elif isinstance(op, RegisterModel):
            example = keep(op.example_path) if op.example_path else ""
            op = replace(op, checkpoint_path=keep(op.checkpoint_path), example_path=example)
        lines.append(json.dumps(op.to_dict()))
    storage.write_text_atomic(uri, "\n".join(lines) + "\n")
    return uri


def _existing_lines(uri: str) -> list[str]:
    return [line for line in storage.read_bytes(uri).decode("utf-8").splitlines()[1:] if line.strip()]


def read_journal(uri: str) -> Journal:
    """The journal at ``uri``; ValueError naming the file when it is not one."""
    lines = [line for line in storage.read_bytes(uri).decode("utf-8").splitlines() if line.strip()]
    try:
        first = json.loads(lines[0]) if lines else {}
        if first.pop("schema", None) != JOURNAL_SCHEMA:
            raise ValueError(f"{uri}: not an MLflow journal (no {JOURNAL_SCHEMA!r} header)")
        header = JournalHeader(**first)
        operations: list[Operation] = []
        replayed = 0
        for line in lines[1:]:
            data = json.loads(line)
            if data.get("op") == _REPLAYED:
                replayed = int(data["operations"])
            else:
                operations.append(operation_from_dict(data, uri))
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise ValueError(f"{uri}: not a valid MLflow journal ({exc})") from exc
    return Journal(header, operations, replayed)


def pending_operations(uri: str) -> int:
    """Calls of the journal at ``uri`` not sent by a replay yet (0 when there is no journal)."""
    if not storage.exists(uri):
        return 0
    journal = read_journal(uri)
    return len(journal.operations) - journal.replayed


def replay_journal(uri: str, tracking_uri: str = "") -> ReplayReport:
    """Send every call of the journal to MLflow (``tracking_uri``, else the recorded one), in order and
    idempotently, then mark it replayed. An MLflow error propagates (run it again later)."""
    journal = read_journal(uri)
    head = journal.header
    target_uri = tracking_uri or head.tracking_uri
    make_sqlite_folder(target_uri)
    client = tracking_client(target_uri)
    if head.run_id and not tracking_uri and _run_exists(client, head.run_id):
        run = client.get_run(head.run_id)
        target = RunTarget(head.run_id, run.info.experiment_id)
    else:
        target = RunTarget(
            *open_train_run(client, head.experiment, head.run_key, head.run_name, reopen=False)
        )
    folder = uri.rsplit("/", 1)[0] if storage.is_s3(uri) else os.path.dirname(os.path.abspath(uri))
    local = scratch_dir("replay") if storage.is_s3(uri) else ""
    try:
        for op in journal.operations:
            if isinstance(op, LogArtifact):
                op = replace(op, local_path=_local_file(folder, op.local_path, local))
            elif isinstance(op, RegisterModel):
                example = _local_file(folder, op.example_path, local) if op.example_path else ""
                op = replace(
                    op, checkpoint_path=_local_file(folder, op.checkpoint_path, local), example_path=example
                )
            op.send(client, target, again=True)
    finally:
        if local:
            shutil.rmtree(local, ignore_errors=True)
    marker: dict[str, Any] = {
        "op": _REPLAYED,
        "operations": len(journal.operations),
        "at": int(time.time() * 1000),
        "tracking_uri": target_uri,
    }
    text = storage.read_bytes(uri).decode("utf-8").rstrip("\n") + "\n" + json.dumps(marker) + "\n"
    storage.write_text_atomic(uri, text)
    status = client.get_run(target.run_id).info.status
    return ReplayReport(target.run_id, len(journal.operations), status)


def _run_exists(client: Any, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    return True


def _local_file(folder: str, rel: str, local: str) -> str:
    """A journal file as a local path (downloaded into ``local`` when the journal is on S3)."""
    if not local:
        return os.path.join(folder, rel)
    path = os.path.join(local, rel)
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(storage.read_bytes(f"{folder}/{rel}"))
    return path
