"""The on-disk shard contract, defined once: every reader and writer of these files goes through it.

    OUT/<split>/shard-NNNNNN.tar        WebDataset tar; per sample <key>.json (SampleMeta), .frames, .cls
    OUT/<split>/shard-NNNNNN.tar.json   ShardSidecar, written after its tar (both present: shard finished)
    OUT/<split>/quarantine.jsonl        one QuarantineEntry per line (videos that failed, and why)
    OUT/<split>/index.json              ShardIndex: ShardEntry per shard + SamplingSettings + ResizeSettings,
                                        written last (present: split finished), sealed by its ``checksum``
    jobs/shard.py output                ShardJobSummary (a SplitSummary per split); --dry-run: DryRunReport

Every record has ``to_dict()`` / ``to_json()`` and ``from_dict(data, source)`` / ``from_json(text, source)``;
the readers raise ``ContractError`` naming ``source`` (the file) and every unknown or missing field. A field
with a default is one that files of earlier versions lack (the comment says since when); field names on disk
never change. ``index_checksum`` (sha256 over the index's canonical JSON without its ``checksum``) is the
"shard index checksum" that training and evaluation record with every number.

One sample is one pre-sampled view of one video: T windows of 5 consecutive frames. Frames shared by
overlapping windows (short videos) are stored once; ``frame_indices`` says which stored frame each window
position uses.

Tar members of one sample (``<key>`` has no dots, whatever the video is called)::

    <key>.json     metadata (SampleMeta below), UTF-8 JSON
    <key>.frames   the JPEGs of ``stored_frames`` concatenated, sizes in ``jpeg_sizes``
    <key>.cls      the label as ASCII text (WebDataset convention)
"""

from __future__ import annotations

import functools
import hashlib
import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, Self

from pipeline.errors import InputError

SCHEMA = "tdn-shards/1"


class ContractError(InputError):
    """A shard file (or job summary) that does not match its record type; the message names the file."""


class CorruptShardError(InputError):
    """Shard bytes that differ from what the writer recorded (a stored frame's CRC32, the whole tar's size and
    sha256 in index.json); the message names the shard and, for a frame, the sample."""


@functools.cache
def _field_names(cls: type) -> tuple[frozenset[str], frozenset[str]]:
    """(every field, the required fields) of a record type."""
    every = fields(cls)
    required = [f.name for f in every if f.default is MISSING and f.default_factory is MISSING]
    return frozenset(f.name for f in every), frozenset(required)


def _checked(cls: type, data: object, source: str) -> dict[str, Any]:
    """``data`` as keyword arguments of ``cls``, or ContractError naming each unknown and missing field."""
    if not isinstance(data, dict):
        raise ContractError(f"{source}: {cls.__name__} must be a JSON object, got {type(data).__name__}")
    names, required = _field_names(cls)
    unknown, missing = sorted(set(data) - names), sorted(required - set(data))
    problems = [f"unknown field {n!r}" for n in unknown] + [f"missing field {n!r}" for n in missing]
    if problems:
        raise ContractError(f"{source}: {cls.__name__}: {', '.join(problems)}")
    return data


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Record:
    """The (de)serialisation every record below shares; records with nested records extend ``from_dict``."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent)

    @classmethod
    def from_dict(cls, data: object, source: str) -> Self:
        return cls(**_checked(cls, data, source))

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> Self:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ContractError(f"{source}: not valid JSON: {exc}") from exc
        return cls.from_dict(data, source)


def _records(cls: type[Record], items: object, source: str) -> list[Any]:
    if not isinstance(items, list):
        raise ContractError(f"{source}: expected a list of {cls.__name__}, got {type(items).__name__}")
    return [cls.from_dict(item, f"{source}[{i}]") for i, item in enumerate(items)]


def _record_map(cls: type[Record], items: object, source: str) -> dict[str, Any]:
    if not isinstance(items, dict):
        raise ContractError(f"{source}: expected an object of {cls.__name__}, got {type(items).__name__}")
    return {key: cls.from_dict(item, f"{source}[{key!r}]") for key, item in items.items()}


def sample_key(video_id: str, view: int) -> str:
    """A tar-safe key: WebDataset cuts member names at the first dot, so the video id is hashed."""
    return f"{hashlib.sha1(video_id.encode('utf-8')).hexdigest()[:20]}_{view:03d}"


@dataclass(frozen=True)
class SampleMeta(Record):
    """``<key>.json`` of one sample."""

    video_id: str
    label: int
    view: int
    num_views: int
    split: str
    source: str
    fps: float
    num_frames: int
    frame_indices: list[list[int]]  # T x 5 source frame indices (0-based)
    stored_frames: list[int]  # sorted unique source frame indices, the order of the JPEGs
    jpeg_sizes: list[int]
    frame_scales: list[int]  # 1 = full resolution, 2 = stored at half resolution
    height: int
    width: int
    # zlib.crc32 of each stored JPEG, checked where it is decoded; absent before issue 14 (then not checked)
    jpeg_crc32: list[int] | None = None

    @property
    def num_segments(self) -> int:
        return len(self.frame_indices)

    def window_positions(self) -> list[list[int]]:
        """T x 5 positions into ``stored_frames`` (what the loader gathers)."""
        where = {f: i for i, f in enumerate(self.stored_frames)}
        return [[where[f] for f in window] for window in self.frame_indices]


def encode_sample(meta: SampleMeta, jpegs: Sequence[bytes]) -> dict[str, bytes | str]:
    """Members of one sample as a WebDataset writer expects them (``__key__`` plus extensions)."""
    if len(jpegs) != len(meta.stored_frames) or [len(j) for j in jpegs] != list(meta.jpeg_sizes):
        raise ValueError(f"{meta.video_id}: JPEG list does not match stored_frames/jpeg_sizes")
    return {
        "__key__": sample_key(meta.video_id, meta.view),
        # A shallow field dict: dataclasses.asdict deep-copies the nested index lists (~0.5 ms per sample,
        # 2-4% of a 240-line video's decode pass); json.dumps reads them as they are. Same bytes.
        "json": json.dumps({f.name: getattr(meta, f.name) for f in fields(meta)}, ensure_ascii=False).encode(
            "utf-8"
        ),
        "frames": b"".join(jpegs),
        "cls": str(meta.label).encode("ascii"),
    }


def decode_sample_metadata(members: Mapping[str, bytes | str], source: str = "sample") -> SampleMeta:
    """SampleMeta from the raw ``json`` member of a sample (keys as read by webdataset, without dot)."""
    return SampleMeta.from_json(members["json"], source)


def frame_crcs(jpegs: Sequence[bytes]) -> list[int]:
    """What the writer records in ``SampleMeta.jpeg_crc32``."""
    return [zlib.crc32(j) for j in jpegs]


def check_frames(meta: SampleMeta, frames: bytes, where: str) -> None:
    """CorruptShardError naming ``where`` (shard and sample) when a stored JPEG's CRC32 differs from the one
    written (samples written before ``jpeg_crc32`` existed have none and pass)."""
    if meta.jpeg_crc32 is None:
        return
    if len(meta.jpeg_crc32) != len(meta.jpeg_sizes) or sum(meta.jpeg_sizes) != len(frames):
        raise CorruptShardError(
            f"{where}: frames member holds {len(frames)} bytes in {len(meta.jpeg_crc32)} CRCs, jpeg_sizes "
            f"list {len(meta.jpeg_sizes)} frames of {sum(meta.jpeg_sizes)}"
        )
    view, start = memoryview(frames), 0
    for i, (size, crc) in enumerate(zip(meta.jpeg_sizes, meta.jpeg_crc32)):
        if zlib.crc32(view[start : start + size]) != crc:
            raise CorruptShardError(
                f"{where} ({meta.video_id!r}): stored frame {i} (source frame {meta.stored_frames[i]}) fails "
                "its CRC32: the shard changed after it was written"
            )
        start += size


def split_jpegs(frames: bytes, sizes: Sequence[int]) -> list[bytes]:
    if sum(sizes) != len(frames):
        raise ValueError(f"frames member holds {len(frames)} bytes, jpeg_sizes add up to {sum(sizes)}")
    out, start = [], 0
    for size in sizes:
        out.append(frames[start : start + size])
        start += size
    return out


@dataclass(frozen=True)
class QuarantineEntry(Record):
    """A video that was not sharded: a line of ``quarantine.jsonl``, an item of a sidecar's ``quarantine``."""

    path: str
    video_id: str
    stage: str  # "missing" (listed, not on storage), or the decode stage that failed (decode_types.Stage)
    error: str


@dataclass(frozen=True)
class ShardSidecar(Record):
    """``shard-NNNNNN.tar.json``: the finished shard, written after its tar."""

    name: str
    split: str
    samples: int
    videos: int
    bytes: int
    sha256: str
    video_ids: list[str]  # the videos written, in tar order
    clamped: list[str]  # videos that decoded to fewer frames than their container announced
    quarantine: list[QuarantineEntry]
    # writer.task_fingerprint of the videos and settings it was made from; absent before 40aedc3 (such a
    # shard is rewritten by a re-run, as then)
    inputs: str | None = None

    @classmethod
    def from_dict(cls, data: object, source: str) -> Self:
        kw = _checked(cls, data, source)
        quarantine = _records(QuarantineEntry, kw["quarantine"], f"{source} quarantine")
        return cls(**{**kw, "quarantine": quarantine})


@dataclass(frozen=True)
class ShardEntry(Record):
    """One shard of a split's index (shards without samples are not listed)."""

    name: str  # file name inside the split folder (a plain name: readers refuse paths, see ShardIndex)
    samples: int
    videos: int  # all views of a video sit in one shard: the loader's epoch plan splits by this count
    bytes: int
    sha256: str


@dataclass(frozen=True)
class SamplingSettings(Record):
    sampler: str  # "train" | "centre" | "multiclip" (pipeline.shards.sampling)
    num_segments: int
    window: int
    views: int
    seed: int
    videos_per_shard: int


@dataclass(frozen=True, kw_only=True)
class ResizeSettings(Record):
    short_side: int  # shorter side of stored full-scale frames, 0 = the source's own
    upscale: bool = True  # absent before 40aedc3, which always scaled to short_side
    jpeg_quality: int
    context_scale: int
    jpeg_encoder: str = "pil"  # absent before e0fca7b, which encoded RGB with PIL


@dataclass(frozen=True)
class ShardIndex(Record):
    """``index.json`` of a split, written last: the shard list and how the samples were made."""

    schema: str
    split: str
    dataset: str
    classes: list[str]
    num_samples: int
    num_videos: int
    views_per_video: int
    shards: list[ShardEntry]
    sampling: SamplingSettings
    resize: ResizeSettings
    annotation_checksums: dict[str, str]  # annotation file name -> sha256
    quarantined: int
    checksum: str  # index_checksum of everything above

    @classmethod
    def from_dict(cls, data: object, source: str) -> Self:
        """Fields, schema and checksum verified (an edited index is an error, not a result)."""
        if isinstance(data, dict) and data.get("schema") != SCHEMA:
            raise ContractError(f"{source}: schema {data.get('schema')!r}, this code reads {SCHEMA!r}")
        kw = _checked(cls, data, source)
        if kw["checksum"] != index_checksum(kw):
            raise ContractError(f"{source}: checksum does not match its content (edited or truncated index)")
        for entry in kw["shards"] if isinstance(kw["shards"], list) else []:
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and not is_plain_file_name(name):
                raise ContractError(
                    f"{source}: shard name {name!r} is not a file name inside the split folder"
                )
        return cls(
            **{
                **kw,
                "shards": _records(ShardEntry, kw["shards"], f"{source} shards"),
                "sampling": SamplingSettings.from_dict(kw["sampling"], f"{source} sampling"),
                "resize": ResizeSettings.from_dict(kw["resize"], f"{source} resize"),
            }
        )

    def sealed(self) -> ShardIndex:
        """This index with its ``checksum`` computed."""
        return replace(self, checksum=index_checksum(self.to_dict()))


def is_plain_file_name(name: str) -> bool:
    """True for a name that stays in its folder: no separators, not absolute, not '.' or '..', no NUL."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def index_checksum(index: Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON of a shard index (as on disk) without its own ``checksum`` field."""
    body = {k: v for k, v in index.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SplitSummary(Record):
    """What the shard job did to one split."""

    listed: int  # videos in the annotations (capped by max_videos_per_split)
    missing: int  # listed but not found on storage
    videos: int
    samples: int
    shards: int
    shards_already_done: int  # finished earlier from the same inputs, skipped
    shards_rewritten: int  # finished earlier from other videos or settings
    quarantined: int  # missing + failed to decode
    failed_fraction: float  # quarantined / listed
    checksum: str  # the split index's


@dataclass(frozen=True)
class ShardJobSummary(Record):
    """The shard job's result, printed as JSON by jobs/shard.py."""

    dataset: str
    output: str
    splits: dict[str, SplitSummary]
    ok: bool  # False when some split's failed_fraction exceeds max_failed_fraction
    seconds: float
    videos_per_s: float

    @classmethod
    def from_dict(cls, data: object, source: str) -> Self:
        kw = _checked(cls, data, source)
        return cls(**{**kw, "splits": _record_map(SplitSummary, kw["splits"], f"{source} splits")})


@dataclass(frozen=True)
class DryRunSplit(Record):
    listed: int
    found: int
    missing: int


@dataclass(frozen=True)
class DryRunReport(Record):
    """``jobs/shard.py --dry-run``: counts only, nothing written."""

    dataset: str
    num_classes: int
    splits: dict[str, DryRunSplit]
    empty_classes: list[str] = field(default_factory=list)  # classes without a training video

    @classmethod
    def from_dict(cls, data: object, source: str) -> Self:
        kw = _checked(cls, data, source)
        return cls(**{**kw, "splits": _record_map(DryRunSplit, kw["splits"], f"{source} splits")})
