"""Reading shards: the split index, tar members -> ``RawSample`` (metadata + undecoded JPEG bytes), the
slices of an epoch plan in order, a bounded shuffle buffer, and the shard list of an evaluation source."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline import storage
from pipeline.loading.planning import ShardSlice, selected_view
from pipeline.shards.contract import SampleMeta, ShardIndex, decode_sample_metadata


def read_index(split_dir: str) -> ShardIndex:
    """The ``index.json`` of a shard split (local folder or s3:// prefix); fields, schema and checksum are
    verified (``contract.ContractError``, a ValueError, names the file)."""
    uri = storage.join(str(split_dir), "index.json")
    try:
        text = storage.read_text(uri)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{uri}: no shard index (has the shard job finished this split?)") from exc
    return ShardIndex.from_json(text, uri)


def shard_uris(split_dir: str, index: ShardIndex) -> list[str]:
    return [storage.join(str(split_dir), s.name) for s in index.shards]


@dataclass
class RawSample:
    meta: SampleMeta
    frames: bytes
    where: str  # shard URI + key, for error messages


def iter_shard(uri: str) -> Iterator[tuple[str, dict[str, Any]]]:
    import webdataset as wds

    storage.register_webdataset_s3()
    for sample in wds.tariterators.tarfile_samples([{"url": uri}]):
        yield sample["__key__"], sample


def parse_sample(uri: str, key: str, sample: dict[str, Any]) -> RawSample:
    where = f"{uri} sample {key}"
    if "json" not in sample or "frames" not in sample:
        raise ValueError(f"{where}: missing .json or .frames member (has {sorted(k for k in sample if k[0] != '_')})")
    try:
        meta = decode_sample_metadata(sample, f"{key}.json")
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{where}: bad metadata: {exc}") from exc
    return RawSample(meta, sample["frames"], where)


def _read_slice(piece: ShardSlice, epoch: int) -> Iterator[RawSample]:
    ordinal = 0
    for key, sample in iter_shard(piece.uri):
        raw = parse_sample(piece.uri, key, sample)
        if raw.meta.view != selected_view(raw.meta.video_id, epoch, raw.meta.num_views):
            continue
        ordinal += 1
        if ordinal - 1 < piece.start:
            continue
        if ordinal - 1 >= piece.stop and not piece.open_end:
            return  # stop reading: the rest of the shard belongs to the next slice
        yield raw


def read_slices(slices: Sequence[ShardSlice], epoch: int) -> Iterator[RawSample]:
    for piece in slices:
        yield from _read_slice(piece, epoch)


def shuffled(items: Iterator[RawSample], size: int, rng: np.random.Generator) -> Iterator[RawSample]:
    """A bounded shuffle buffer over a finite stream (flushed at its end, so nothing is dropped)."""
    buf: list[RawSample] = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = int(rng.integers(len(buf)))
        buf[j], item = item, buf[j]
        yield item
    rng.shuffle(buf)
    yield from buf


def resolve_shards(source: str | os.PathLike | Sequence[str]) -> list[str]:
    """Shard URIs from a split folder (its index.json, else its *.tar files), one .tar, or a list."""
    if isinstance(source, (str, os.PathLike)):
        source = str(source)
        if source.endswith(".tar"):
            return [source]
        if storage.exists(storage.join(source, "index.json")):
            return shard_uris(source, read_index(source))
        found = storage.list_files(source, ".tar")
        if not found:
            raise FileNotFoundError(f"{source}: no index.json and no .tar shards")
        return found
    uris = [str(u) for u in source]
    if not uris:
        raise ValueError("eval_batches: empty shard list")
    return uris
