"""pipeline.shards.writer without Ray: samples hold the sampled frames, shards are reproducible, bad videos
are quarantined without losing the good ones."""

from __future__ import annotations

import dataclasses
import io
import tarfile
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from pipeline.shards.contract import (
    ResizeSettings,
    SamplingSettings,
    ShardSidecar,
    decode_sample_metadata,
    index_checksum,
    sample_key,
    split_jpegs,
)
from pipeline.shards.sampling import CentreSampler, TrainSampler, centre_starts, rng_for
from pipeline.shards.tar_io import sha256_file
from pipeline.shards.writer import (
    EncodeSettings,
    ShardTask,
    VideoItem,
    build_index,
    video_samples,
    write_shard,
)
from tests.video_zoo import BAD_STAGES, GOOD, make_damaged_mjpeg, make_zoo, read_index

SETTINGS = EncodeSettings(short_side=32, jpeg_quality=90)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> tuple[dict[str, Path], dict[str, Path]]:
    return make_zoo(tmp_path_factory.mktemp("zoo"))


def _item(name: str, path: Path, label: int = 3, split: str = "train") -> VideoItem:
    return VideoItem(video_id=f"-{name}.v1 #&é", path=str(path), label=label, split=split)


def _frames(sample: dict) -> tuple:
    meta = decode_sample_metadata(sample)
    jpegs = split_jpegs(sample["frames"], meta.jpeg_sizes)
    images = [Image.open(io.BytesIO(j)) for j in jpegs]
    return meta, images


def test_samples_hold_the_sampled_frames(zoo):
    good, _ = zoo
    video = _item("h264", good["h264"])
    sampler = TrainSampler(num_segments=3, num_views=2)
    out = video_samples(video, sampler, seed=7, settings=SETTINGS)
    expected = sampler.sample(GOOD["h264"][1].frames, rng_for(7, video.video_id, "train"))
    assert len(out.samples) == 2 and not out.clamped
    for sample, clip in zip(out.samples, expected):
        meta, images = _frames(sample)
        assert sample["__key__"] == sample_key(video.video_id, clip.view)
        assert "." not in sample["__key__"]
        assert sample["cls"] == b"3"
        assert meta.video_id == video.video_id and meta.view == clip.view and meta.num_views == 2
        assert meta.frame_indices == [list(w) for w in clip.frame_indices]
        assert meta.stored_frames == clip.unique_frames()
        assert meta.num_frames == 24 and meta.fps == 25.0 and meta.source == video.path
        assert (meta.height, meta.width) == (32, 43)
        assert meta.frame_scales == [1] * len(meta.stored_frames)
        # The stored pixels are the frames named in stored_frames.
        assert [read_index(_rgb(im)) for im in images] == meta.stored_frames
        assert all(im.size == (43, 32) for im in images)


@pytest.mark.parametrize("name", ["h264", "rotated"])
def test_sources_at_or_below_the_short_side_keep_their_size_without_upscale(zoo, name):
    """upscale=False stores a 64x48 source asked for at short side 56 at 64x48 (context frames at half of
    that), the same frames as upscale=True stores at 75x56; a short side below the source still resizes."""
    good, _ = zoo
    sampler = CentreSampler(num_segments=2)
    portrait = name == "rotated"
    for short_side, upscale, size in [(56, False, (64, 48)), (56, True, (75, 56)), (32, False, (43, 32))]:
        settings = EncodeSettings(short_side=short_side, jpeg_quality=90, upscale=upscale, context_scale=2)
        meta, images = _frames(video_samples(_item(name, good[name]), sampler, 0, settings).samples[0])
        width, height = size[::-1] if portrait else size
        assert (meta.width, meta.height) == (width, height)
        centres = {w[2] for w in meta.frame_indices}
        for frame, img in zip(meta.stored_frames, images):
            assert img.size == ((width, height) if frame in centres else (width // 2, height // 2))
            assert read_index(_rgb(img), axis=1 if portrait else 0) == frame


def _rgb(img: Image.Image):
    import numpy as np

    return np.asarray(img.convert("RGB"))


def test_half_resolution_context_frames(zoo):
    good, _ = zoo
    settings = EncodeSettings(short_side=32, jpeg_quality=90, context_scale=2)
    out = video_samples(_item("vp9", good["vp9"]), CentreSampler(num_segments=2), 0, settings)
    meta, images = _frames(out.samples[0])
    centres = {w[2] for w in meta.frame_indices}
    for frame, scale, img in zip(meta.stored_frames, meta.frame_scales, images):
        assert scale == (1 if frame in centres else 2)
        assert img.size == ((43, 32) if scale == 1 else (21, 16))
        assert read_index(_rgb(img)) == frame


def test_too_short_video_repeats_frames(zoo):
    good, _ = zoo
    out = video_samples(
        _item("short", good["too_short"]), TrainSampler(num_segments=8, num_views=1), 0, SETTINGS
    )
    meta, images = _frames(out.samples[0])
    assert len(meta.frame_indices) == 8 and all(len(w) == 5 for w in meta.frame_indices)
    assert meta.stored_frames == [0, 1, 2]
    assert [read_index(_rgb(im)) for im in images] == [0, 1, 2]


def test_rotated_video_metadata_is_portrait(zoo):
    good, _ = zoo
    out = video_samples(_item("rot", good["rotated"]), CentreSampler(num_segments=2), 0, SETTINGS)
    meta, images = _frames(out.samples[0])
    assert (meta.height, meta.width) == (43, 32)
    assert [read_index(_rgb(im), axis=1) for im in images] == meta.stored_frames


def _task(videos, split_dir: Path, index: int = 0) -> ShardTask:
    return ShardTask(
        split="train",
        shard_index=index,
        split_dir=str(split_dir),
        videos=tuple(videos),
        sampler=TrainSampler(num_segments=2, num_views=2),
        seed=1,
        encode=SETTINGS,
    )


def test_write_shard_quarantines_bad_videos_and_is_reproducible(zoo, tmp_path):
    good, bad = zoo
    videos = [_item(n, good[n]) for n in ("h264", "mjpeg")] + [_item(n, bad[n]) for n in sorted(BAD_STAGES)]
    videos.insert(1, _item("hevc", good["hevc"]))
    result = write_shard(_task(videos, tmp_path / "a"))
    side = result.sidecar
    assert not result.skipped
    assert side.samples == 6 and side.videos == 3
    assert side.video_ids == [videos[0].video_id, videos[1].video_id, videos[2].video_id]
    stages = {q.video_id: q.stage for q in side.quarantine}
    assert stages == {_item(n, bad[n]).video_id: BAD_STAGES[n] for n in BAD_STAGES}
    assert all(q.error and q.path for q in side.quarantine)
    tar_path = tmp_path / "a" / "shard-000000.tar"
    sidecar_path = tmp_path / "a" / "shard-000000.tar.json"
    assert ShardSidecar.from_json(sidecar_path.read_text(), str(sidecar_path)) == side
    assert side.bytes == tar_path.stat().st_size
    with tarfile.open(tar_path) as tar:
        names = tar.getnames()
    assert len(names) == 18 and names[0].endswith(".json")
    # WebDataset groups the members back into the 6 samples.
    keys = [s["__key__"] for s in wds.WebDataset(str(tar_path), shardshuffle=False)]
    assert keys == [sample_key(v.video_id, view) for v in videos[:3] for view in (0, 1)]
    # A finished shard is skipped; a fresh run elsewhere writes identical bytes.
    assert write_shard(_task(videos, tmp_path / "a")).skipped
    again = write_shard(_task(videos, tmp_path / "b")).sidecar
    assert again.sha256 == side.sha256
    assert (tmp_path / "b" / "shard-000000.tar").read_bytes() == tar_path.read_bytes()


def test_a_finished_shard_from_other_inputs_is_rewritten(zoo, tmp_path):
    """A re-run skips a finished shard only when it was made from the same videos and output settings; one
    made with another short side or from another video list is rewritten, so the output never mixes both."""
    good, _ = zoo
    videos = [_item(n, good[n]) for n in ("h264", "mjpeg")]
    first = write_shard(_task(videos, tmp_path))
    assert not first.replaced
    # Settings that do not change the bytes do not count.
    neutral = dataclasses.replace(
        _task(videos, tmp_path),
        encode=dataclasses.replace(SETTINGS, decode_threads=2, skip_unneeded_frames=False),
    )
    assert write_shard(neutral).skipped
    resized = dataclasses.replace(
        _task(videos, tmp_path), encode=dataclasses.replace(SETTINGS, short_side=24)
    )
    rewritten = write_shard(resized)
    assert not rewritten.skipped and rewritten.replaced
    assert rewritten.sidecar.inputs != first.sidecar.inputs
    assert rewritten.sidecar.sha256 == sha256_file(str(tmp_path / "shard-000000.tar")) != first.sidecar.sha256
    meta, images = _frames(next(iter(wds.WebDataset(str(tmp_path / "shard-000000.tar"), shardshuffle=False))))
    assert min(images[0].size) == 24
    assert write_shard(resized).skipped
    other_videos = write_shard(_task(videos[:1], tmp_path))
    assert other_videos.replaced and other_videos.sidecar.video_ids == [videos[0].video_id]


def test_build_index_checksum_and_empty_shards():
    sidecars = [
        ShardSidecar(
            name="shard-000001.tar",
            split="train",
            samples=0,
            videos=0,
            bytes=10240,
            sha256="b",
            video_ids=[],
            clamped=[],
            quarantine=[],
            inputs="y",
        ),
        ShardSidecar(
            name="shard-000000.tar",
            split="train",
            samples=4,
            videos=2,
            bytes=999,
            sha256="a",
            video_ids=["v1", "v2"],
            clamped=[],
            quarantine=[],
            inputs="x",
        ),
    ]
    kwargs = dict(
        split="train",
        dataset="csv",
        classes=["a", "b"],
        views_per_video=2,
        sampling=SamplingSettings(
            sampler="train", num_segments=8, window=5, views=2, seed=0, videos_per_shard=2
        ),
        resize=ResizeSettings(short_side=320, jpeg_quality=90, context_scale=1, jpeg_encoder="simplejpeg"),
        annotation_checksums={"x.csv": "00"},
        quarantined=3,
    )
    index = build_index(sidecars=sidecars, **kwargs)
    assert [s.name for s in index.shards] == ["shard-000000.tar"]
    assert index.num_samples == 4 and index.num_videos == 2 and index.quarantined == 3
    assert index.checksum == index_checksum(index.to_dict())
    other = build_index(sidecars=sidecars, **{**kwargs, "quarantined": 2})
    assert other.checksum != index.checksum
    assert build_index(sidecars=list(reversed(sidecars)), **kwargs) == index


def test_damaged_video_is_sampled_on_its_decodable_frames(tmp_path):
    path = make_damaged_mjpeg(tmp_path / "damaged.avi", frames=20, broken=(5, 6, 12))
    # Centre windows over the 20 packets start at 2, 8, 13: the last reaches 17, past the 17 decodable.
    starts = centre_starts(20, 3)
    assert starts[-1] + 4 >= 17
    out = video_samples(_item("dmg", path), CentreSampler(num_segments=3), 0, SETTINGS)
    assert out.clamped and out.frames_decoded == 17
    meta, images = _frames(out.samples[0])
    assert meta.num_frames == 17
    assert meta.frame_indices == [[min(s + k, 16) for k in range(5)] for s in starts]
    assert meta.stored_frames == sorted({i for w in meta.frame_indices for i in w})
    source = [k if k < 5 else k + 2 if k < 10 else k + 3 for k in meta.stored_frames]  # frames 5, 6, 12 lost
    assert [read_index(_rgb(im)) for im in images] == source


def test_simplejpeg_yuv_encoder_stores_the_same_frames(zoo):
    """The default YUV-planes encoder: same frames, sizes and orientation as the RGB + PIL route."""
    good, _ = zoo
    fast = EncodeSettings(short_side=32, jpeg_quality=90, context_scale=2, jpeg_encoder="simplejpeg")
    slow = EncodeSettings(short_side=32, jpeg_quality=90, context_scale=2, jpeg_encoder="pil")
    for case in ("odd_444", "rotated", "hevc_10bit", "mjpeg"):
        axis = 1 if GOOD[case][1].rotation else 0
        a = video_samples(_item(case, good[case]), CentreSampler(num_segments=2), 0, fast)
        b = video_samples(_item(case, good[case]), CentreSampler(num_segments=2), 0, slow)
        (meta_a, images_a), (meta_b, images_b) = _frames(a.samples[0]), _frames(b.samples[0])
        assert (meta_a.height, meta_a.width) == (meta_b.height, meta_b.width)
        assert meta_a.stored_frames == meta_b.stored_frames and meta_a.frame_scales == meta_b.frame_scales
        assert [im.size for im in images_a] == [im.size for im in images_b]
        assert [read_index(_rgb(im), axis=axis) for im in images_a] == meta_a.stored_frames
