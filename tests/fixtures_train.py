"""Shards of the synthetic motion dataset for training and evaluation tests.

``synthetic_shards`` (session-scoped) is a shard root with ``train/`` (several pre-sampled views per video)
and ``val/`` (one centre view per video), in the project schema (docs/ARCHITECTURE.md). Its four classes are
pan left / right and zoom in / out: single frames look alike in every class (pipeline/synthetic_render.py), so
only a model that sees motion beats chance -- the training tests use that to tell TDN from TSN. (Of the
motions tried, whole-frame pans and zooms are the ones a tiny TDN learns within a CPU test's budget.)

Frames are rendered directly at the small size the tests train at and stored as JPEGs, as the shard job
stores them; the video encode/decode path is tested by the shard job's own tests.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from pipeline.sampling import CentreSampler, Sampler, TrainSampler, rng_for
from pipeline.shard_format import SCHEMA, SampleMeta, encode_sample, index_checksum
from pipeline.synthetic_render import MOTION_CLASSES, render_clip


@dataclass(frozen=True)
class ShardSpec:
    motions: tuple[int, ...] = (10, 11, 4, 5)  # indices into MOTION_CLASSES: pan left / right, zoom in / out
    train_per_class: int = 32
    val_per_class: int = 12
    num_segments: int = 4
    train_views: int = 2
    frames: tuple[int, int] = (28, 44)  # min, max frames per video
    size: tuple[int, int] = (64, 64)  # height, width
    shards_per_split: int = 4
    frame_stride: int = 1  # keep every k-th rendered frame: k times the motion per frame (a lower frame rate)
    seed: int = 7


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_split(root: Path, split: str, spec: ShardSpec, per_class: int, sampler: Sampler, views: int) -> Path:
    """Render ``per_class`` clips per class and write ``root/<split>/shard-NNNNNN.tar`` + index.json."""
    split_dir = root / split
    split_dir.mkdir(parents=True, exist_ok=True)
    names = [MOTION_CLASSES[c].ucf_name for c in spec.motions]
    classes = len(spec.motions)
    per_shard: list[list[dict]] = [[] for _ in range(spec.shards_per_split)]
    videos_in = [0] * spec.shards_per_split
    per_shard_videos = -(-per_class * classes // spec.shards_per_split)
    i = 0
    for j in range(per_class):
        for label in range(classes):
            vid = f"{split}/{names[label]}.{j:03d}"
            rng = rng_for(spec.seed, vid, "frames")
            num_frames = int(rng.integers(spec.frames[0], spec.frames[1] + 1))
            motion = MOTION_CLASSES[spec.motions[label]].motion
            clip = render_clip(motion, num_frames * spec.frame_stride, spec.size[0], spec.size[1], rng)
            clip = clip[:: spec.frame_stride]
            k = i // per_shard_videos  # contiguous blocks of the class-interleaved order: every class in every shard
            i += 1
            videos_in[k] += 1
            for sampled in sampler.sample(num_frames, rng_for(spec.seed, vid, split)):
                stored = sampled.unique_frames()
                jpegs = [_jpeg(clip[f]) for f in stored]
                meta = SampleMeta(
                    video_id=vid, label=label, view=sampled.view, num_views=views, split=split,
                    source=f"{vid}.mp4", fps=25.0, num_frames=num_frames,
                    frame_indices=[list(w) for w in sampled.frame_indices], stored_frames=stored,
                    jpeg_sizes=[len(j) for j in jpegs], frame_scales=[1] * len(stored),
                    height=spec.size[0], width=spec.size[1],
                )  # fmt: skip
                per_shard[k].append(encode_sample(meta, jpegs))
    shards = []
    for k, samples in enumerate(per_shard):
        name = f"shard-{k:06d}.tar"
        with wds.TarWriter(str(split_dir / name)) as sink:
            for sample in samples:
                sink.write(sample)
        data = (split_dir / name).read_bytes()
        shards.append({"name": name, "samples": len(samples), "videos": videos_in[k], "bytes": len(data),
                       "sha256": hashlib.sha256(data).hexdigest()})  # fmt: skip
    index = {
        "schema": SCHEMA, "split": split, "dataset": "synthetic-motion", "classes": names,
        "num_samples": sum(s["samples"] for s in shards), "num_videos": per_class * classes,
        "views_per_video": views, "shards": shards,
        "sampling": {"num_segments": spec.num_segments, "views": views, "seed": spec.seed},
        "resize": {"short_side": 0, "jpeg_quality": 90}, "annotation_checksums": {}, "quarantined": 0,
    }  # fmt: skip
    index["checksum"] = index_checksum(index)
    (split_dir / "index.json").write_text(json.dumps(index, indent=1))
    return split_dir


def write_shards(root: Path, spec: ShardSpec = ShardSpec()) -> Path:
    write_split(root, "train", spec, spec.train_per_class, TrainSampler(spec.num_segments, spec.train_views),
                spec.train_views)  # fmt: skip
    write_split(root, "val", spec, spec.val_per_class, CentreSampler(spec.num_segments), 1)
    return root


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shard root (``train/``, ``val/``) of 4 motion classes, 4 segments, 64x64 frames; read-only."""
    return write_shards(tmp_path_factory.mktemp("synthetic_shards"))
