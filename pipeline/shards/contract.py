"""The WebDataset sample schema shared by the shard writer, the training loader and evaluation.

One sample is one pre-sampled view of one video: T windows of 5 consecutive frames. Frames shared by
overlapping windows (short videos) are stored once; ``frame_indices`` says which stored frame each window
position uses.

Tar members of one sample (``<key>`` has no dots, whatever the video is called)::

    <key>.json     metadata (SampleMeta below), UTF-8 JSON
    <key>.frames   the JPEGs of ``stored_frames`` concatenated, sizes in ``jpeg_sizes``
    <key>.cls      the label as ASCII text (WebDataset convention)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

SCHEMA = "tdn-shards/1"


def sample_key(video_id: str, view: int) -> str:
    """A tar-safe key: WebDataset cuts member names at the first dot, so the video id is hashed."""
    return f"{hashlib.sha1(video_id.encode('utf-8')).hexdigest()[:20]}_{view:03d}"


@dataclass(frozen=True)
class SampleMeta:
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
        "json": json.dumps({f.name: getattr(meta, f.name) for f in fields(meta)}, ensure_ascii=False).encode("utf-8"),
        "frames": b"".join(jpegs),
        "cls": str(meta.label).encode("ascii"),
    }


def decode_sample_metadata(members: Mapping[str, bytes]) -> SampleMeta:
    """SampleMeta from the raw ``json`` member of a sample (keys as read by webdataset, without dot)."""
    raw = members["json"]
    data = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    return SampleMeta(**data)


def split_jpegs(frames: bytes, sizes: Sequence[int]) -> list[bytes]:
    if sum(sizes) != len(frames):
        raise ValueError(f"frames member holds {len(frames)} bytes, jpeg_sizes add up to {sum(sizes)}")
    out, start = [], 0
    for size in sizes:
        out.append(frames[start : start + size])
        start += size
    return out


def index_checksum(index: Mapping) -> str:
    """sha256 over the canonical JSON of a shard index without its own ``checksum`` field."""
    body = {k: v for k, v in index.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
