"""Small evaluation shards in the project schema straight from rendered frames, with control over which shard
each view lands in (the evaluation tests and benchmarks/eval_throughput.py).

    videos = render_videos(classes=3, per_class=2, frames=20)        # [RenderedVideo], frames (F, H, W, 3)
    split_dir = write_split(root, videos, class_names, SplitLayout(num_segments=4, clips=2, num_shards=2))
        -> root/<split>/shard-NNNNNN.tar + index.json (sealed)

The shard job decides placement itself; evaluation tests need placements it would not choose (the views of
one video split over shards), so this writes tars directly with ``pipeline.shards.contract`` and webdataset,
without a video encoder: frames are rendered motion clips (render.py), JPEG-encoded (quality 90, PIL) like
the shard job stores them.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image

from pipeline.shards.contract import (
    SCHEMA,
    ResizeSettings,
    SampleMeta,
    SamplingSettings,
    ShardEntry,
    ShardIndex,
    encode_sample,
)
from pipeline.shards.sampling import WINDOW, CentreSampler, MultiClipSampler, rng_for
from pipeline.synthetic.render import MOTION_CLASSES, render_clip

JPEG_QUALITY = 90


@dataclass(frozen=True)
class RenderedVideo:
    video_id: str  # "<class> clip.NN #<label>": dots and spaces on purpose (keys must survive them)
    label: int
    frames: np.ndarray  # uint8 (F, H, W, 3)


@dataclass(frozen=True)
class SplitLayout:
    """How ``write_split`` samples and places the views."""

    num_segments: int  # T of every stored clip
    clips: int = 1  # 1: one centre clip per video; more: evenly spaced clips (multiclip)
    num_shards: int = 2
    # view v of video i goes to shard shard_of(i, v); None: video i to shard i % num_shards
    shard_of: Callable[[int, int], int] | None = None
    split: str = "val"
    dataset: str = "synthetic"
    seed: int = 0  # of the clip sampling (multiclip offsets), recorded in the index

    def shard(self, video: int, view: int) -> int:
        return self.shard_of(video, view) if self.shard_of is not None else video % self.num_shards


def render_videos(
    classes: int, per_class: int, frames: int = 24, size: tuple[int, int] = (64, 80), seed: int = 0
) -> list[RenderedVideo]:
    """``per_class`` clips of each of the first ``classes`` motion classes, ``frames`` x (H, W) = ``size``."""
    out = []
    for label in range(classes):
        mc = MOTION_CLASSES[label]
        for j in range(per_class):
            vid = f"{mc.ucf_name} clip.{j:02d} #{label}"
            clip = render_clip(mc.motion, frames, size[0], size[1], rng_for(seed, vid, "eval-test"))
            out.append(RenderedVideo(vid, label, clip))
    return out


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def write_split(
    root: Path, videos: Sequence[RenderedVideo], class_names: Sequence[str], layout: SplitLayout
) -> Path:
    """Write ``root/<split>/shard-NNNNNN.tar`` + index.json; returns the split folder."""
    split_dir = root / layout.split
    split_dir.mkdir(parents=True, exist_ok=True)
    per_shard: dict[int, list[dict[str, bytes | str]]] = {k: [] for k in range(layout.num_shards)}
    videos_in: dict[int, set[str]] = {k: set() for k in range(layout.num_shards)}
    clips = layout.clips
    sampler = (
        CentreSampler(layout.num_segments) if clips == 1 else MultiClipSampler(layout.num_segments, clips)
    )
    for i, video in enumerate(videos):
        f, h, w, _ = video.frames.shape
        for clip in sampler.sample(f, rng_for(layout.seed, video.video_id, "eval-test-sample")):
            stored = clip.unique_frames()
            jpegs = [_jpeg(video.frames[k]) for k in stored]
            meta = SampleMeta(
                video_id=video.video_id,
                label=video.label,
                view=clip.view,
                num_views=clips,
                split=layout.split,
                source=f"{video.video_id}.mp4",
                fps=25.0,
                num_frames=f,
                frame_indices=[list(win) for win in clip.frame_indices],
                stored_frames=stored,
                jpeg_sizes=[len(j) for j in jpegs],
                frame_scales=[1] * len(stored),
                height=h,
                width=w,
            )
            k = layout.shard(i, clip.view)
            per_shard[k].append(encode_sample(meta, jpegs))
            videos_in[k].add(video.video_id)
    shards = []
    for k in range(layout.num_shards):
        name = f"shard-{k:06d}.tar"
        with wds.TarWriter(str(split_dir / name)) as sink:
            for sample in per_shard[k]:
                sink.write(sample)
        data = (split_dir / name).read_bytes()
        shards.append(
            ShardEntry(
                name=name,
                samples=len(per_shard[k]),
                videos=len(videos_in[k]),
                bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    index = ShardIndex(
        schema=SCHEMA,
        split=layout.split,
        dataset=layout.dataset,
        classes=list(class_names),
        num_samples=sum(s.samples for s in shards),
        num_videos=len(videos),
        views_per_video=clips,
        shards=shards,
        sampling=SamplingSettings(
            sampler="centre" if clips == 1 else "multiclip",
            num_segments=layout.num_segments,
            window=WINDOW,
            views=clips,
            seed=layout.seed,
            videos_per_shard=0,  # 0: placed by SplitLayout.shard_of, not cut by count
        ),
        resize=ResizeSettings(short_side=0, jpeg_quality=JPEG_QUALITY, context_scale=1),
        annotation_checksums={},
        quarantined=0,
        checksum="",
    ).sealed()
    (split_dir / "index.json").write_text(index.to_json(indent=1))
    return split_dir
