"""The tracker's write-ahead log: every MLflow call is on disk before it is sent, until MLflow acknowledges it.

    <folder>/wal.jsonl     one line per call {"seq": n, <operation>} (appended and fsync'd by append()),
                           {"ack": n} lines once sent; truncated whenever nothing is left unacknowledged
    <folder>/wal-files/<n>/... copies of the files a call uploads (LogArtifact, RegisterModel): the originals
                           live in a worker's scratch folder, which a killed worker never cleans up

The training thread appends (fsync: about 0.1-1 ms on a local disk, once per logged batch of metrics, so a
few times a minute); the tracker's sender acknowledges. A process killed at any moment leaves every call
it queued either acknowledged (MLflow has it) or in the log; the next start of the same run (a restarted
worker group, or the same run name launched again) queues ``pending()`` first, and sends them as repeats,
which skip what MLflow already has (tdn/tracking/operations.py: metrics by key and step), so no call is
lost and none is applied twice. An ack that did not reach the disk only means one call is sent again.

The folder is local: beside the run's checkpoints when they are on a local or shared file system, else in
the node's temporary folder (an S3 object cannot be appended to or fsync'd; then a rank 0 restarted on
another node does not see it, and the calls of the epochs after the last checkpoint are logged again by
the replayed epochs, while calls queued before that checkpoint may be lost with the node).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace

from tdn.tracking.operations import LogArtifact, Operation, RegisterModel, operation_from_dict

WAL_FILE = "wal.jsonl"
WAL_FILES = "wal-files"


class WriteAheadLog:
    """Unacknowledged calls of one training run (use from one process; append and ack are thread-safe
    only under the tracker's lock)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.path = os.path.join(folder, WAL_FILE)
        os.makedirs(folder, exist_ok=True)
        self._pending: dict[int, Operation] = {}
        recovered = self._read()
        self._next = max(recovered, default=0) + 1
        self.recovered = [recovered[seq] for seq in sorted(recovered)]  # from an earlier attempt

    def _read(self) -> dict[int, Operation]:
        if not os.path.exists(self.path):
            return {}
        ops: dict[int, Operation] = {}
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    data = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut by the kill: it was never acknowledged, nor was it sent
                if "ack" in data:
                    ops.pop(int(data["ack"]), None)
                else:
                    seq = int(data.pop("seq"))
                    ops[seq] = operation_from_dict(data, self.path)
        self._pending = dict(ops)
        return ops

    def _keep_file(self, seq: int, path: str) -> str:
        folder = os.path.join(self.folder, WAL_FILES, str(seq))
        os.makedirs(folder, exist_ok=True)
        kept = os.path.join(folder, os.path.basename(path))
        shutil.copyfile(path, kept)
        return kept

    def append(self, op: Operation) -> tuple[int, Operation]:
        """Write ``op`` durably; returns its sequence number and the operation to send (files it uploads
        are copied into the log's folder first, so they outlive the worker's scratch folder)."""
        seq = self._next
        self._next += 1
        if isinstance(op, LogArtifact):
            op = replace(op, local_path=self._keep_file(seq, op.local_path))
        elif isinstance(op, RegisterModel):
            example = self._keep_file(seq, op.example_path) if op.example_path else ""
            op = replace(op, checkpoint_path=self._keep_file(seq, op.checkpoint_path), example_path=example)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"seq": seq, **op.to_dict()}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._pending[seq] = op
        return seq, op

    def adopt(self, op: Operation) -> int:
        """Give a recovered call (already in the log) its place in this attempt's bookkeeping."""
        for seq, pending in self._pending.items():
            if pending is op:
                return seq
        raise KeyError("not a recovered call of this log")

    def acknowledge(self, seqs: list[int]) -> None:
        """MLflow has these calls. Truncates the log when nothing is left."""
        for seq in seqs:
            self._pending.pop(seq, None)
        if not self._pending:
            with open(self.path, "w", encoding="utf-8") as f:
                f.flush()
                os.fsync(f.fileno())
            shutil.rmtree(os.path.join(self.folder, WAL_FILES), ignore_errors=True)
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps({"ack": seq}) + "\n" for seq in seqs))

    @property
    def unacknowledged(self) -> int:
        return len(self._pending)
