"""Tiny shard splits for the loader tests, written with the real contract (pipeline.shards.contract) and a
real tar writer, whose JPEG pixels say what they are:

    R = 8 * (frame_index % 30) + 4   (solid: which source frame)
    G = horizontal ramp 0..255 over the full frame width (crop position and flip)
    B = 40 * view + 20               (solid: which pre-sampled view)
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline import storage
from pipeline.shards.contract import (
    SCHEMA,
    ResizeSettings,
    SampleMeta,
    SamplingSettings,
    ShardEntry,
    ShardIndex,
    encode_sample,
)
from pipeline.shards.sampling import WINDOW, TrainSampler, rng_for


@dataclass(frozen=True)
class FakeVideo:
    video_id: str
    label: int
    num_frames: int


def frame_code(frame_index: int) -> int:
    return 8 * (frame_index % 30) + 4


def view_code(view: int) -> int:
    return 40 * view + 20


def frame_pixels(frame_index: int, view: int, w: int, h: int) -> np.ndarray:
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[..., 0] = frame_code(frame_index)
    img[..., 1] = np.round(np.arange(w) * 255.0 / (w - 1)).astype(np.uint8)[None, :]
    img[..., 2] = view_code(view)
    return img


def jpeg_bytes(pixels: np.ndarray, scale: int = 1) -> bytes:
    img = Image.fromarray(pixels)
    if scale != 1:
        img = img.resize((pixels.shape[1] // scale, pixels.shape[0] // scale), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=95, subsampling=0)
    return out.getvalue()


def make_sample(
    video: FakeVideo,
    view: int,
    num_views: int,
    frame_indices: list[list[int]],
    size: tuple[int, int],
    half_res_neighbours: bool = False,
) -> dict:
    w, h = size
    stored = sorted({f for window in frame_indices for f in window})
    centres = {window[2] for window in frame_indices}
    scales = [1 if (f in centres or not half_res_neighbours) else 2 for f in stored]
    jpegs = [jpeg_bytes(frame_pixels(f, view, w, h), s) for f, s in zip(stored, scales)]
    meta = SampleMeta(
        video_id=video.video_id,
        label=video.label,
        view=view,
        num_views=num_views,
        split="train",
        source=f"/videos/{video.video_id}.mp4",
        fps=25.0,
        num_frames=video.num_frames,
        frame_indices=frame_indices,
        stored_frames=stored,
        jpeg_sizes=[len(j) for j in jpegs],
        frame_scales=scales,
        height=h,
        width=w,
    )
    return encode_sample(meta, jpegs)


def write_split(
    split_dir: str,
    videos: list[FakeVideo],
    videos_per_shard: list[int],
    num_views: int = 2,
    num_segments: int = 3,
    size: tuple[int, int] = (64, 48),
    half_res_neighbours: bool = False,
    num_classes: int | None = None,
) -> ShardIndex:
    """Shards of ``videos_per_shard[i]`` videos each (all views of a video in one shard) + index.json, on
    local disk or s3://. Returns the index."""
    import webdataset as wds

    if sum(videos_per_shard) != len(videos):
        raise ValueError("videos_per_shard must add up to the number of videos")
    sampler = TrainSampler(num_segments=num_segments, num_views=num_views)
    shards, start = [], 0
    for i, count in enumerate(videos_per_shard):
        name = f"shard-{i:06d}.tar"
        buf = io.BytesIO()
        with wds.TarWriter(buf) as sink:
            for video in videos[start : start + count]:
                clips = sampler.sample(video.num_frames, rng_for(0, video.video_id))
                for clip in clips:
                    windows = [list(w) for w in clip.frame_indices]
                    sink.write(make_sample(video, clip.view, num_views, windows, size, half_res_neighbours))
        storage.write_bytes_atomic(storage.join(split_dir, name), buf.getvalue())
        shards.append(
            ShardEntry(
                name=name,
                samples=count * num_views,
                videos=count,
                bytes=len(buf.getvalue()),
                sha256=hashlib.sha256(buf.getvalue()).hexdigest(),
            )
        )
        start += count
    classes = num_classes or (max(v.label for v in videos) + 1)
    index = split_index(shards, classes, num_views, num_segments, min(size))
    storage.write_text_atomic(storage.join(split_dir, "index.json"), index.to_json())
    return index


def split_index(
    shards: list[ShardEntry],
    num_classes: int,
    num_views: int = 2,
    num_segments: int = 3,
    short_side: int = 48,
) -> ShardIndex:
    """The index of a fake train split made of ``shards``, sealed with its checksum."""
    return ShardIndex(
        schema=SCHEMA,
        split="train",
        dataset="fake",
        classes=[f"c{i}" for i in range(num_classes)],
        num_samples=sum(s.samples for s in shards),
        num_videos=sum(s.videos for s in shards),
        views_per_video=num_views,
        shards=shards,
        sampling=SamplingSettings(
            sampler="train",
            num_segments=num_segments,
            window=WINDOW,
            views=num_views,
            seed=0,
            videos_per_shard=max([s.videos for s in shards], default=0),
        ),
        resize=ResizeSettings(short_side=short_side, jpeg_quality=95, context_scale=1),
        annotation_checksums={},
        quarantined=0,
        checksum="",
    ).sealed()


def fake_videos(n: int, prefix: str = "vid", min_frames: int = 6, max_frames: int = 40) -> list[FakeVideo]:
    """``n`` videos whose label is their number (so a batch's labels name its videos); some are shorter
    than a window sweep and repeat frames. Ids carry dots, spaces and unicode."""
    rng = np.random.default_rng(7)
    return [
        FakeVideo(f"{prefix}.{i} ä#{i}", i, int(rng.integers(min_frames, max_frames + 1))) for i in range(n)
    ]


def local_split(tmp_path: os.PathLike, name: str = "train") -> str:
    return os.path.join(str(tmp_path), name)


def reseal_index(split_dir: str) -> ShardIndex:
    """Rewrite a local split's index.json with its shards' current sizes and sha256 (a shard changed before
    its index was written: the digest check passes, the frames' own checks must catch what changed)."""
    from dataclasses import replace

    from pipeline.loading.shard_reading import read_index

    index = read_index(split_dir)
    shards = []
    for entry in index.shards:
        data = open(os.path.join(split_dir, entry.name), "rb").read()
        shards.append(replace(entry, bytes=len(data), sha256=hashlib.sha256(data).hexdigest()))
    index = replace(index, shards=shards).sealed()
    storage.write_text_atomic(storage.join(split_dir, "index.json"), index.to_json())
    return index
