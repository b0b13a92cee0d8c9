"""One shard, start to finish: decode its videos, build the samples, write the tar, upload it atomically.

``write_shard(task)`` is the unit of work of the Ray job (one task per shard). It never raises for a bad
video: each video is processed inside its own try block and a failure becomes a quarantine entry, so one
corrupt file never costs the good videos around it (Ray Data's block-level error handling would drop them).

Output of one shard (``<split_dir>/shard-NNNNNN.tar`` then ``shard-NNNNNN.tar.json``)::

    tar:     <key>.json <key>.frames <key>.cls  for every view of every good video, in assignment order
    sidecar: contract.ShardSidecar (counts, sha256, the videos written, their quarantine entries and
             ``inputs``, the task's fingerprint)

The sidecar is written after the tar, so "tar and sidecar both exist" means the shard is complete; a re-run
skips such shards when their ``inputs`` (``task_fingerprint``: the videos, sampler, seed and encode settings)
are the task's own, and rewrites them otherwise: a re-run with another short side or a changed dataset listing
never leaves a mix of old and new shards. Tars are byte-identical across runs: fixed member metadata (mtime 0,
uid 0, mode 0644), deterministic sampling (``rng_for(seed, video_id, split)``) and deterministic decoding + JPEG encoding.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

from pipeline import storage
from pipeline.disk import DiskFullError, disk_full, is_full_disk
from pipeline.shards.contract import (
    SCHEMA,
    QuarantineEntry,
    ResizeSettings,
    SampleMeta,
    SamplingSettings,
    ShardEntry,
    ShardIndex,
    ShardSidecar,
    encode_sample,
    frame_crcs,
)
from pipeline.shards.decode_types import DecodeResult, FrameRequest, JpegEncoder, VideoError
from pipeline.shards.frame_folder import FrameFolder
from pipeline.shards.sampled_decode import DecodeOptions, decode_sampled
from pipeline.shards.sampled_decode import frame_requests as frame_requests  # benchmarks/shard_throughput.py
from pipeline.shards.sampling import Sampler, rng_for
from pipeline.shards.tar_io import sha256_file, write_tar
from pipeline.shards.temp_files import remove_stale_temporaries, temp_tar_path
from pipeline.shards.video_file import VideoFile


@dataclass(frozen=True)
class EncodeSettings:
    short_side: int  # shorter side of full-scale frames, 0 = keep the source size
    jpeg_quality: int
    upscale: bool = True  # False: sources whose shorter side is short_side or less keep their size
    context_scale: int = 1  # 2 = store non-centre window frames at half resolution
    jpeg_encoder: JpegEncoder = "simplejpeg"  # YUV planes straight to JPEG; "pil": RGB then PIL
    decode_threads: int = 1
    min_decoded_fraction: float = 0.5
    skip_unneeded_frames: bool = True  # leave unneeded non-reference frames undecoded (shards/video_file.py)


@dataclass(frozen=True)
class VideoItem:
    """What a shard task needs to know about one video (a plain copy of datasets.VideoRecord)."""

    video_id: str
    path: str
    label: int
    split: str


@dataclass(frozen=True)
class ShardTask:
    split: str
    shard_index: int
    split_dir: str  # local folder or s3:// prefix
    videos: tuple[VideoItem, ...]
    sampler: Sampler
    seed: int
    encode: EncodeSettings

    @property
    def name(self) -> str:
        return shard_name(self.shard_index)


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


# Settings that change how a shard is computed but not its bytes (frame skipping is checked against the plain
# decode, frame-threaded decoding outputs the same frames): a re-run that changes only these skips finished shards.
_OUTPUT_NEUTRAL_SETTINGS = ("decode_threads", "skip_unneeded_frames")


def task_fingerprint(task: ShardTask) -> str:
    """sha256 of everything that determines a shard's bytes: its videos (id, path, label), the sampler, the
    seed and the encode settings."""
    encode = {k: v for k, v in asdict(task.encode).items() if k not in _OUTPUT_NEUTRAL_SETTINGS}
    if not is_dataclass(task.sampler) or isinstance(task.sampler, type):
        raise TypeError(f"a sampler must be a dataclass instance to be fingerprinted, got {task.sampler!r}")
    described = {
        "split": task.split,
        "shard_index": task.shard_index,
        "videos": [asdict(v) for v in task.videos],
        "sampler": {"type": type(task.sampler).__name__, **asdict(task.sampler)},
        "seed": task.seed,
        "encode": encode,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def quarantine_entry(video: VideoItem, stage: str, error: str) -> QuarantineEntry:
    return QuarantineEntry(path=video.path, video_id=video.video_id, stage=stage, error=error)


@dataclass
class VideoSamples:
    samples: list[dict[str, bytes | str]]
    clamped: bool = False
    frames_decoded: int = 0
    frames_not_decoded: int = 0  # unneeded non-reference frames the decoder skipped (shards/video_file.py)
    jpeg_bytes: int = 0


def video_samples(video: VideoItem, sampler: Sampler, seed: int, settings: EncodeSettings) -> VideoSamples:
    """All views of one video as encoded samples; raises VideoError (with its stage) for a bad video.

    Decoding and sampling: sampled_decode.decode_sampled (shared with predict), producing JPEGs. Each
    distinct (frame, scale) is decoded and JPEG-encoded once even when several views share it.
    """

    def produce(
        source: VideoFile | FrameFolder, wanted: list[FrameRequest], result: DecodeResult
    ) -> Iterable[tuple[FrameRequest, bytes, tuple[int, int]]]:
        return source.jpegs(
            wanted,
            settings.short_side,
            settings.jpeg_quality,
            settings.jpeg_encoder,
            result,
            settings.upscale,
        )

    options = DecodeOptions(
        settings.decode_threads,
        settings.min_decoded_fraction,
        settings.skip_unneeded_frames,
        settings.context_scale,
    )
    decoded = decode_sampled(
        video.path, sampler, rng_for(seed, video.video_id, video.split), options, produce
    )
    info, full_size = decoded.info, decoded.full_size
    samples = []
    for k, (clip, requests) in enumerate(zip(decoded.clips, decoded.per_clip)):
        clip_jpegs = decoded.clip_payloads(k)
        meta = SampleMeta(
            video_id=video.video_id,
            label=video.label,
            view=clip.view,
            num_views=len(decoded.clips),
            split=video.split,
            source=video.path,
            fps=round(info.fps, 6),
            num_frames=decoded.num_frames,
            frame_indices=[list(w) for w in clip.frame_indices],
            stored_frames=[r.index for r in requests],
            jpeg_sizes=[len(f) for f in clip_jpegs],
            frame_scales=[r.scale for r in requests],
            height=full_size[0],
            width=full_size[1],
            jpeg_crc32=frame_crcs(clip_jpegs),
        )
        samples.append(encode_sample(meta, clip_jpegs))
    return VideoSamples(
        samples=samples,
        clamped=decoded.result.clamped,
        frames_decoded=decoded.result.num_decoded,
        frames_not_decoded=decoded.result.not_decoded,
        jpeg_bytes=sum(len(b) for b in decoded.payloads.values()),
    )


@dataclass
class ShardResult:
    """What a shard task reports to the driver (the sidecar plus run-time counters)."""

    sidecar: ShardSidecar
    skipped: bool
    replaced: bool = False  # a finished shard written from other inputs was rewritten
    seconds: float = 0.0
    frames_decoded: int = 0
    stats: dict[str, float] = field(default_factory=dict)

    @classmethod
    def failed(cls, task: ShardTask) -> ShardResult:
        """The row of a task that could not write its shard (its fields typed as a real one's)."""
        nothing = ShardSidecar(task.name, task.split, 0, 0, 0, "", [], [], [])
        return cls(sidecar=nothing, skipped=False)

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["sidecar"] = self.sidecar.to_json()
        row["stats"] = json.dumps(self.stats)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ShardResult:
        """The inverse of ``to_row`` (on the driver, from a Ray Data row)."""
        return cls(
            sidecar=ShardSidecar.from_json(row["sidecar"], f"shard task {row['id']} result"),
            skipped=bool(row["skipped"]),
            replaced=bool(row["replaced"]),
            seconds=float(row["seconds"]),
            frames_decoded=int(row["frames_decoded"]),
            stats=json.loads(row["stats"]),
        )


def read_sidecar(split_dir: str, name: str) -> ShardSidecar | None:
    """The sidecar of a finished shard (tar and sidecar both present), else None."""
    tar_uri = storage.join(split_dir, name)
    side_uri = tar_uri + ".json"
    if not (storage.exists(side_uri) and storage.exists(tar_uri)):
        return None
    return ShardSidecar.from_json(storage.read_text(side_uri), side_uri)


def write_shard(task: ShardTask) -> ShardResult:
    """Decode, sample and encode every video of the shard; write tar then sidecar; skip a shard finished from
    the same inputs (``task_fingerprint``)."""
    inputs = task_fingerprint(task)
    existing = read_sidecar(task.split_dir, task.name)
    if existing is not None and existing.inputs == inputs:
        return ShardResult(sidecar=existing, skipped=True)
    start = time.perf_counter()
    quarantine: list[QuarantineEntry] = []
    written: list[str] = []
    clamped: list[str] = []
    frames_decoded = 0
    tar_uri = storage.join(task.split_dir, task.name)
    remove_stale_temporaries(task.split_dir, task.name)  # what killed attempts at this shard left
    tmp = temp_tar_path(tar_uri)  # this attempt's own name: removed below whatever happens
    try:

        def good_samples() -> Iterable[dict[str, bytes | str]]:
            nonlocal frames_decoded
            for video in task.videos:
                try:
                    result = video_samples(video, task.sampler, task.seed, task.encode)
                except VideoError as exc:
                    quarantine.append(quarantine_entry(video, exc.stage, str(exc)))
                    continue
                except Exception as exc:  # noqa: BLE001 - one bad video must not stop the shard
                    quarantine.append(quarantine_entry(video, "decode", f"{type(exc).__name__}: {exc}"))
                    continue
                frames_decoded += result.frames_decoded
                written.append(video.video_id)
                if result.clamped:
                    clamped.append(video.video_id)
                yield from result.samples

        count = write_tar(tmp, good_samples())
        size = os.path.getsize(tmp)
        sidecar = ShardSidecar(
            name=task.name,
            split=task.split,
            samples=count,
            videos=len(written),
            bytes=size,
            sha256=sha256_file(tmp),
            video_ids=written,
            clamped=clamped,
            quarantine=quarantine,
            inputs=inputs,
        )
        if storage.is_s3(tar_uri):
            storage.upload_file_atomic(tmp, tar_uri)
        else:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, tar_uri)
        storage.write_text_atomic(tar_uri + ".json", sidecar.to_json(indent=1))
    except Exception as exc:
        if is_full_disk(exc):  # one line naming the shard, its size so far and what is free
            written_so_far = os.path.getsize(tmp) if os.path.exists(tmp) else 0
            raise disk_full(tar_uri, written_so_far, at_least=True) from exc
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    seconds = time.perf_counter() - start
    return ShardResult(
        sidecar=sidecar,
        skipped=False,
        replaced=existing is not None,
        seconds=seconds,
        frames_decoded=frames_decoded,
        stats={"videos_per_s": len(task.videos) / seconds if seconds > 0 else 0.0},
    )


def write_shard_row(row: dict[str, Any]) -> dict[str, Any]:
    """Ray Data map function: one row = one pickled ShardTask (pickled so Arrow never sees nested objects).
    It lives here, not in shard_job, so that workers import no annotation parsers."""
    task: ShardTask = pickle.loads(row["task"])
    try:
        return {"id": row["id"], "disk_full": "", **write_shard(task).to_row()}
    except DiskFullError as exc:  # the job stops: said by the driver in one line (an exception would reach it
        # as Ray Data's wrapper, its cause lost in pickling, with a 100-line traceback)
        return {"id": row["id"], "disk_full": str(exc), **ShardResult.failed(task).to_row()}


def build_index(
    *,
    split: str,
    dataset: str,
    classes: Sequence[str],
    sidecars: Sequence[ShardSidecar],
    views_per_video: int,
    sampling: SamplingSettings,
    resize: ResizeSettings,
    annotation_checksums: dict[str, str],
    quarantined: int,
) -> ShardIndex:
    """The split's index.json (contract.ShardIndex) with its checksum. Shards without samples (every video
    failed) stay on storage for resume but are not listed, so readers never open an empty tar."""
    shards = [
        ShardEntry(name=s.name, samples=s.samples, videos=s.videos, bytes=s.bytes, sha256=s.sha256)
        for s in sorted(sidecars, key=lambda s: s.name)
        if s.samples > 0
    ]
    return ShardIndex(
        schema=SCHEMA,
        split=split,
        dataset=dataset,
        classes=list(classes),
        num_samples=sum(s.samples for s in shards),
        num_videos=sum(s.videos for s in shards),
        views_per_video=views_per_video,
        shards=shards,
        sampling=sampling,
        resize=resize,
        annotation_checksums=dict(annotation_checksums),
        quarantined=quarantined,
        checksum="",
    ).sealed()
