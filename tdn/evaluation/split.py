"""The evaluation split, its ``index.json`` read once: what every stage of one evaluation receives.

    split folder (local or s3://)
      │ read_split        index.json (fields, schema and checksum verified; an index without a checksum is an
      │                   error: results must name the shards they used) -> shard URIs in index order
      ▼ EvalSplit(folder, index, uris)
        resolve_protocol (protocol.py)   the index's clips per video against the protocol's
        run_inference (replica_pool.py)  each shard's URI with its index entry (size, sha256 to verify)
        EvalResult (batch_inference.py)  dataset, split, checksum; the MLflow dataset input (lineage.py)

Nothing downstream opens ``index.json`` again (the replicas get each shard's ``ShardEntry`` with its URI).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import storage
from pipeline.loading.shard_reading import read_index, shard_uris
from pipeline.shards.contract import ShardEntry, ShardIndex


@dataclass(frozen=True)
class EvalSplit:
    """One shard split under evaluation: its folder, its verified index and the URIs of its shards."""

    folder: str  # the split folder as given (local path or s3:// URI), recorded with the result
    index: ShardIndex
    uris: tuple[str, ...]  # one per index.shards entry, same order

    @property
    def entries(self) -> tuple[ShardEntry, ...]:
        return tuple(self.index.shards)

    def check_shards(self) -> None:
        """Before any inference: FileNotFoundError naming a listed shard that is gone, ValueError when the
        index lists none."""
        missing = [u for u in self.uris if not storage.exists(u)]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} shard(s) listed in index.json are missing, e.g. {missing[0]}"
            )
        if not self.uris:
            raise ValueError(f"{self.folder}: index.json lists no shards")


def read_split(folder: str) -> EvalSplit:
    """The split's index.json, schema and checksum verified (an edited index is an error, not a result);
    whether its shards are there is ``check_shards``."""
    index = read_index(folder)
    if not index.checksum:
        raise ValueError(f"{folder}: index.json has no checksum; results must name the shards they used")
    return EvalSplit(folder, index, tuple(shard_uris(folder, index)))
