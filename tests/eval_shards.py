"""Write small evaluation shards in the project schema, with control over which shard each view lands in.

The shard job decides placement itself; evaluation tests need placements it would not choose (the views of
one video split over shards), so this writes tars directly with ``pipeline.shards.contract`` and webdataset.
Frames are rendered motion clips (pipeline.synthetic.render), JPEG-encoded like the shard job stores them.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
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


def render_videos(
    classes: int, per_class: int, frames: int = 24, size: tuple[int, int] = (64, 80), seed: int = 0
):
    """[(video_id, label, uint8 (F, H, W, 3))]; ids with dots and spaces on purpose."""
    out = []
    for label in range(classes):
        mc = MOTION_CLASSES[label]
        for j in range(per_class):
            vid = f"{mc.ucf_name} clip.{j:02d} #{label}"
            clip = render_clip(mc.motion, frames, size[0], size[1], rng_for(seed, vid, "eval-test"))
            out.append((vid, label, clip))
    return out


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_split(
    root: Path,
    videos: Sequence[tuple[str, int, np.ndarray]],
    class_names: Sequence[str],
    num_segments: int,
    clips: int = 1,
    num_shards: int = 2,
    shard_of: Callable[[int, int], int] | None = None,
    split: str = "val",
    dataset: str = "synthetic",
    seed: int = 0,
) -> Path:
    """Write ``root/<split>/shard-NNNNNN.tar`` + index.json; view v of video i goes to shard_of(i, v)."""
    split_dir = root / split
    split_dir.mkdir(parents=True, exist_ok=True)
    place = shard_of or (lambda i, v: i % num_shards)
    per_shard: dict[int, list[dict[str, bytes | str]]] = {k: [] for k in range(num_shards)}
    videos_in: dict[int, set[str]] = {k: set() for k in range(num_shards)}
    sampler = CentreSampler(num_segments) if clips == 1 else MultiClipSampler(num_segments, clips)
    for i, (vid, label, frames) in enumerate(videos):
        f, h, w, _ = frames.shape
        for clip in sampler.sample(f, rng_for(seed, vid, "eval-test-sample")):
            stored = clip.unique_frames()
            jpegs = [_jpeg(frames[k]) for k in stored]
            meta = SampleMeta(
                video_id=vid, label=label, view=clip.view, num_views=clips, split=split, source=f"{vid}.mp4",
                fps=25.0, num_frames=f, frame_indices=[list(win) for win in clip.frame_indices],
                stored_frames=stored, jpeg_sizes=[len(j) for j in jpegs], frame_scales=[1] * len(stored),
                height=h, width=w,
            )  # fmt: skip
            k = place(i, clip.view)
            per_shard[k].append(encode_sample(meta, jpegs))
            videos_in[k].add(vid)
    shards = []
    for k in range(num_shards):
        name = f"shard-{k:06d}.tar"
        with wds.TarWriter(str(split_dir / name)) as sink:
            for sample in per_shard[k]:
                sink.write(sample)
        data = (split_dir / name).read_bytes()
        shards.append(ShardEntry(name=name, samples=len(per_shard[k]), videos=len(videos_in[k]), bytes=len(data),
                                 sha256=hashlib.sha256(data).hexdigest()))  # fmt: skip
    index = ShardIndex(
        schema=SCHEMA, split=split, dataset=dataset, classes=list(class_names),
        num_samples=sum(s.samples for s in shards), num_videos=len(videos), views_per_video=clips, shards=shards,
        sampling=SamplingSettings(sampler="centre" if clips == 1 else "multiclip", num_segments=num_segments,
                                  window=WINDOW, views=clips, seed=seed, videos_per_shard=0),  # 0: shard_of
        resize=ResizeSettings(short_side=0, jpeg_quality=90, context_scale=1),
        annotation_checksums={}, quarantined=0, checksum="",
    ).sealed()  # fmt: skip
    (split_dir / "index.json").write_text(index.to_json(indent=1))
    return split_dir


def save_tiny_checkpoint(path: Path, num_classes: int, class_names: Sequence[str], variant: str = "tdn",
                         num_segments: int = 4, seed: int = 0) -> str:  # fmt: skip
    """A freshly initialised ResNet-18 (width 0.25) project checkpoint: accuracy is not the point."""
    import torch

    from tdn.checkpoints.project import save_checkpoint
    from tdn.model.networks import ModelConfig, build_model_from_config

    cfg = ModelConfig(arch="resnet18", num_classes=num_classes, num_segments=num_segments, width=0.25,
                      variant=variant, dropout=0.0)  # type: ignore[arg-type]  # fmt: skip
    torch.manual_seed(seed)
    save_checkpoint(str(path), build_model_from_config(cfg).eval(), cfg, list(class_names))
    return str(path)


def register_checkpoint_version(tracking_uri: str, ckpt: str, name: str, alias: str = "") -> tuple[str, str]:
    """Register a project checkpoint the way training does (tdn.tracking.registry); returns (version, run id).
    Without the pt2 export (about 10 s of CPU each): evaluation reads the version's checkpoint.pt."""
    from tdn.tracking.mlflow_store import create_run, get_or_create_experiment, tracking_client
    from tdn.tracking.registry import register_checkpoint

    client = tracking_client(tracking_uri)
    exp_id = get_or_create_experiment(client, "eval-test-train")
    run = create_run(client, exp_id, "train", {})
    version = register_checkpoint(client, run.run_id, exp_id, ckpt, name, {"val_top1": 0.5}, alias=alias,
                                  export=False)  # fmt: skip
    run.finish()
    return version, run.run_id
