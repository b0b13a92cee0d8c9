"""Reading shards: the split index, tar members -> ``RawSample`` (metadata + undecoded JPEG bytes), the
slices of an epoch plan in order, a bounded shuffle buffer, and the shard list of an evaluation source.

Verified while reading (``iter_shard``): a shard listed in an index is hashed as its bytes stream in, and a
size or sha256 that differs from its ``index.json`` entry raises ``CorruptShardError`` at the end of the
shard, before its last sample is handed out (a tar cut at a member boundary reads as a shorter valid tar;
this catches it). A reader that stops early (a training slice that ends inside a shard) skips the check:
the slice owning the shard's end reads it all. Each stored JPEG's CRC32 is checked where it is decoded
(``contract.check_frames``, pipeline/loading/batch_decode.py).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from pipeline import storage
from pipeline.loading.planning import ShardSlice, selected_view
from pipeline.shards.contract import (
    CorruptShardError,
    SampleMeta,
    ShardEntry,
    ShardIndex,
    decode_sample_metadata,
)


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


def indexed_shards(split_dir: str) -> list[str]:
    """The shards of a split's verified ``index.json``; unlike ``resolve_shards``, a folder of tars without
    an index is an error (training validates only on shards whose checksum it can name and verify)."""
    return shard_uris(split_dir, read_index(split_dir))


@dataclass
class RawSample:
    meta: SampleMeta
    frames: bytes
    where: str  # shard URI + key, for error messages


class _HashingReader:
    """A read-only stream that counts (and with ``hashing``, hashes) every byte read through it."""

    def __init__(self, raw: IO[bytes], hashing: bool) -> None:
        self.raw, self.digest, self.size = raw, hashlib.sha256() if hashing else None, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if self.digest is not None:
            self.digest.update(data)
        self.size += len(data)
        return data


def iter_shard(uri: str, expected: ShardEntry | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, {"__key__", ext: bytes, ...}) per sample, members grouped by key in tar order. With ``expected``
    (the shard's index entry), the shard's size and sha256 are checked before its last sample is yielded."""
    with storage.open_input_stream(uri) as raw:
        reader = _HashingReader(raw, hashing=expected is not None)
        key, sample = "", dict[str, Any]()
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    if not member.isfile():
                        continue
                    name, _, ext = member.name.partition(".")
                    if name != key and sample:
                        yield key, sample
                    if name != key:
                        key, sample = name, {"__key__": name}
                    data = tar.extractfile(member)
                    sample[ext] = data.read() if data is not None else b""
        except (tarfile.TarError, EOFError) as exc:
            raise CorruptShardError(f"{uri}: not a readable tar ({type(exc).__name__}: {exc})") from exc
        while reader.read(1 << 20):  # the end-of-archive blocks
            pass
    digest = reader.digest.hexdigest() if reader.digest is not None else ""
    if expected is not None and (reader.size, digest) != (expected.bytes, expected.sha256):
        raise CorruptShardError(
            f"{uri}: {reader.size} bytes with sha256 {digest[:16]}..., index.json lists "
            f"{expected.bytes} bytes with sha256 {expected.sha256[:16]}...: the shard changed after it was "
            "written (truncated, corrupted or replaced)"
        )
    if sample:
        yield key, sample


# Each folder's index entries by name, per process, with the (size, mtime) of the index.json they came from.
# Evaluation replicas score one shard per call: re-reading the whole index.json for every shard made an
# evaluation O(shards^2) (benchmarks/scale.py: 0.065 s per call at 4,000 shards, 0.15 s at 16,000).
_ENTRIES: dict[str, tuple[tuple[int, int], dict[str, ShardEntry]]] = {}


def _folder_entries(folder: str) -> dict[str, ShardEntry]:
    """name -> entry of the folder's index.json ({} without one), read again only when the file changed."""
    uri = storage.join(folder, "index.json")
    stamp = storage.file_stamp(uri)
    if stamp is None:
        return {}
    cached = _ENTRIES.get(folder)
    if cached is None or cached[0] != stamp:
        # a name -> entry table: a scan of the shard list per shard was O(shards^2) too
        cached = _ENTRIES[folder] = (stamp, {s.name: s for s in read_index(folder).shards})
    return cached[1]


def listed_entries(uris: Sequence[str]) -> list[ShardEntry | None]:
    """Each shard's entry in the ``index.json`` of its folder, or None for a shard no index lists (a bare
    folder of tars: read unverified, but for the frames' CRCs). Each folder's index is read once per process
    and again only when it changed."""
    entries: dict[str, dict[str, ShardEntry]] = {}
    out = []
    for uri in uris:
        folder, _, name = str(uri).rpartition("/")
        folder = folder or "."
        if folder not in entries:
            entries[folder] = _folder_entries(folder)
        out.append(entries[folder].get(name))
    return out


def parse_sample(uri: str, key: str, sample: dict[str, Any]) -> RawSample:
    where = f"{uri} sample {key}"
    if "json" not in sample or "frames" not in sample:
        raise CorruptShardError(
            f"{where}: missing .json or .frames member (has {sorted(k for k in sample if k[0] != '_')})"
        )
    try:
        meta = decode_sample_metadata(sample, f"{key}.json")
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptShardError(f"{where}: bad metadata: {exc}") from exc
    return RawSample(meta, sample["frames"], where)


def _read_slice(piece: ShardSlice, epoch: int) -> Iterator[RawSample]:
    ordinal = 0
    for key, sample in iter_shard(piece.uri, piece.entry):
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
