"""The shard loader end to end on tiny real shards (tests/loader_shards.py): frame order, crops, flips,
label swap, per-rank step counts, once-per-epoch coverage, eval rows, local disk and S3."""

from __future__ import annotations

import dataclasses
import io
import os
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import storage
from pipeline.loading.config import LoaderConfig
from pipeline.loading.eval_loader import eval_batches
from pipeline.loading.planning import epoch_plan, selected_view, train_steps_per_epoch
from pipeline.loading.shard_reading import read_index, shard_uris
from pipeline.loading.train_loader import train_loader
from pipeline.loading.transforms import crop_size_pairs, denormalise, fixed_offsets, normalise_on_device
from pipeline.shards.contract import ContractError, ShardEntry
from pipeline.shards.sampling import TrainSampler, rng_for
from tests.loader_shards import (
    fake_videos,
    frame_code,
    frame_pixels,
    jpeg_bytes,
    reseal_index,
    split_index,
    view_code,
    write_split,
)

SIZE = (64, 48)  # stored frames: short side 48
T = 3


def _clip(video_id: str, num_frames: int, view: int) -> list[list[int]]:
    clips = TrainSampler(num_segments=T, num_views=2).sample(num_frames, rng_for(0, video_id))
    return [list(w) for w in clips[view].frame_indices]


def _pixels(x: torch.Tensor) -> np.ndarray:
    """(..., 3, S, S) normalised float -> (..., S, S, 3) float 0..255."""
    return denormalise(x).movedim(-3, -1).numpy()


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list]:
    videos = fake_videos(11)
    root = str(tmp_path_factory.mktemp("shards") / "train")
    write_split(root, videos, [5, 1, 3, 2], num_views=2, num_segments=T, size=SIZE)
    return root, videos


def test_frames_arrive_in_t_by_5_order_with_one_crop_and_flip_per_sample(split: tuple[str, list]) -> None:
    root, videos = split
    cfg = LoaderConfig(batch_size=4, num_workers=0, input_size=40, flip="random", decode_threads=2)
    epoch = 3
    flips = Counter()
    for x, y in train_loader(root, cfg, rank=0, world_size=1, epoch=epoch, seed=5):
        assert x.shape == (4, T, 5, 3, 40, 40) and x.dtype == torch.float32 and y.dtype == torch.int64
        px = _pixels(x)
        for row, label in enumerate(y.tolist()):
            video = videos[label]
            view = selected_view(video.video_id, epoch, 2)
            want = np.array(
                [[frame_code(f) for f in w] for w in _clip(video.video_id, video.num_frames, view)]
            )
            got = px[row, ..., 0].mean(axis=(-1, -2))  # (T, 5) mean red level
            assert np.abs(got - want).max() < 3, (video.video_id, got, want)
            assert np.abs(px[row, ..., 2] - view_code(view)).max() < 4
            ramps = px[row, ..., 1].mean(axis=-2)  # (T, 5, S) green ramp along x
            assert (
                np.abs(ramps - ramps[0, 0]).max() < 6
            )  # one crop and flip for all T x 5 frames (JPEG noise only)
            flips[bool(ramps[0, 0, 0] > ramps[0, 0, -1])] += 1
    assert flips[True] > 0 and flips[False] > 0


def test_train_crop_is_exactly_one_of_the_released_boxes(split: tuple[str, list]) -> None:
    root, videos = split
    cfg = LoaderConfig(batch_size=3, num_workers=0, input_size=40, flip="random", decode_threads=1)
    w, h = SIZE
    candidates = []
    for cw, ch in crop_size_pairs(w, h, 40, cfg.scales):
        for ox, oy in fixed_offsets(w, h, cw, ch):
            candidates.append((ox, oy, ox + cw, oy + ch))
    x, y = next(iter(train_loader(root, cfg, rank=0, world_size=1, epoch=0, seed=9)))
    got = np.round(_pixels(x)).astype(int)
    for row, label in enumerate(y.tolist()):
        video = videos[label]
        view = selected_view(video.video_id, 0, 2)
        first = _clip(video.video_id, video.num_frames, view)[0][0]
        full = Image.open(io.BytesIO(jpeg_bytes(frame_pixels(first, view, w, h))))
        refs = []
        for box in set(candidates):
            ref = np.asarray(full.crop(box).resize((40, 40), Image.Resampling.BILINEAR)).astype(int)
            refs += [ref, ref[:, ::-1]]
        assert min(np.abs(got[row, 0, 0] - r).max() for r in refs) <= 1


def test_flip_swaps_direction_paired_labels(split: tuple[str, list]) -> None:
    root, videos = split
    pairs = [
        (v.label, 100 + v.label) for v in videos
    ]  # partner labels outside the data: y >= 100 <=> swapped
    cfg = LoaderConfig(batch_size=4, num_workers=0, input_size=40, flip="swap_labels", flip_label_pairs=pairs)
    seen = Counter()
    for x, y in train_loader(root, cfg, rank=0, world_size=1, epoch=0, seed=2):
        ramps = _pixels(x)[:, 0, 0, :, :, 1].mean(axis=1)  # (B, S)
        for row, label in enumerate(y.tolist()):
            flipped = bool(ramps[row, 0] > ramps[row, -1])
            assert flipped == (label >= 100)
            seen[flipped] += 1
    assert seen[True] and seen[False]
    cfg_none = LoaderConfig(batch_size=4, num_workers=0, input_size=40, flip="none")
    for x, y in train_loader(root, cfg_none, rank=0, world_size=1, epoch=0, seed=2):
        ramps = _pixels(x)[:, 0, 0, :, :, 1].mean(axis=1)
        assert (ramps[:, 0] < ramps[:, -1]).all() and (y < 100).all()


@pytest.mark.integration
def test_equal_steps_per_rank_and_every_video_once_per_epoch(split: tuple[str, list]) -> None:
    """11 videos in uneven shards (5, 1, 3, 2), 2 ranks x 2 loader worker processes, batch 2: 3 steps per
    rank, 12 rows, every video once plus one repeat; the view follows the epoch."""
    root, videos = split
    cfg = LoaderConfig(batch_size=2, num_workers=2, input_size=32, decode_threads=2)
    index = read_index(root)
    assert train_steps_per_epoch(index, cfg, 2) == 3
    orders = []
    for epoch in (0, 1):
        labels: list[int] = []
        for rank in (0, 1):
            loader = train_loader(root, cfg, rank=rank, world_size=2, epoch=epoch, seed=4)
            batches = list(loader)
            assert len(batches) == len(loader) == 3
            for x, y in batches:
                assert x.shape == (2, T, 5, 3, 32, 32)
                px = _pixels(x)
                for row, label in enumerate(y.tolist()):
                    view = selected_view(videos[label].video_id, epoch, 2)
                    assert abs(px[row, ..., 2].mean() - view_code(view)) < 4
                labels += y.tolist()
        counts = Counter(labels)
        assert set(counts) == set(range(11)) and sum(counts.values()) == 12
        orders.append(labels)
    assert orders[0] != orders[1]  # shards are reshuffled every epoch


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
@pytest.mark.parametrize("num_workers", [0, 1, 3])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_epoch_plan_covers_each_video_once_within_quotas(
    world_size: int, num_workers: int, batch_size: int
) -> None:
    counts = [7, 0, 1, 12, 3, 5]
    index = split_index([ShardEntry(str(i), 2 * c, c, 0, "") for i, c in enumerate(counts)], num_classes=1)
    uris = [str(i) for i in range(len(counts))]
    cfg = LoaderConfig(batch_size=batch_size, num_workers=num_workers)
    steps = train_steps_per_epoch(index, cfg, world_size)
    owned: Counter = Counter()
    for rank in range(world_size):
        plans = epoch_plan(index, uris, cfg, rank, world_size, num_workers, epoch=2, seed=1)
        assert sum(p.num_batches for p in plans) == steps
        for plan in plans:
            n = sum(s.stop - s.start for s in plan.slices)
            assert n <= plan.num_batches * batch_size
            for s in plan.slices:
                owned.update((s.uri, o) for o in range(s.start, s.stop))
                assert s.open_end == (s.stop == counts[int(s.uri)])
    assert owned == Counter({(str(i), o): 1 for i, c in enumerate(counts) for o in range(c)})


def test_uint8_output_normalised_on_device_equals_float_output(split: tuple[str, list]) -> None:
    root, _ = split
    common = dict(batch_size=3, num_workers=2, input_size=32)
    a = list(train_loader(root, LoaderConfig(**common), 0, 2, epoch=1, seed=3))
    b = list(train_loader(root, LoaderConfig(**common, output_dtype="uint8"), 0, 2, epoch=1, seed=3))
    assert len(a) == len(b) == 2
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xb.dtype == torch.uint8 and xb.shape == xa.shape
        assert torch.equal(ya, yb)
        assert torch.allclose(normalise_on_device(xb, "cpu"), xa, atol=1e-6)


def test_half_resolution_neighbours_decode_to_the_same_frames(tmp_path: os.PathLike) -> None:
    videos = fake_videos(4)
    full, half = str(tmp_path / "full"), str(tmp_path / "half")
    write_split(full, videos, [4], num_segments=T, size=(128, 96))
    write_split(half, videos, [4], num_segments=T, size=(128, 96), half_res_neighbours=True)
    cfg = LoaderConfig(batch_size=4, num_workers=0, input_size=56)
    ((xa, ya),) = train_loader(full, cfg, 0, 1, epoch=0, seed=0)
    ((xb, yb),) = train_loader(half, cfg, 0, 1, epoch=0, seed=0)
    assert torch.equal(ya, yb)
    pa, pb = _pixels(xa), _pixels(xb)
    assert np.abs(pa[:, :, 2] - pb[:, :, 2]).max() < 2  # centre frames are stored at full resolution
    assert np.abs(pa[..., 0].mean((-1, -2)) - pb[..., 0].mean((-1, -2))).max() < 3  # same frames
    assert np.abs(pa - pb).mean() < 2.0  # same crop, flip and colours


def _expected_rows(videos: list, crops: int) -> set[tuple[str, int, int]]:
    return {(v.video_id, view, c) for v in videos for view in range(2) for c in range(crops)}


@pytest.mark.parametrize("num_workers", [0, 2])
def test_eval_yields_every_sample_once_with_centre_crop(split: tuple[str, list], num_workers: int) -> None:
    root, videos = split
    cfg = LoaderConfig(num_workers=num_workers, input_size=40, eval_short_side=48, eval_crops=1)
    rows: list[tuple[str, int, int]] = []
    for batch in eval_batches(root, cfg, batch_size=5):
        assert batch.x.shape[1:] == (T, 5, 3, 40, 40) and len(batch.video_ids) == batch.x.shape[0] <= 5
        px = _pixels(batch.x)
        for i, (vid, view, crop) in enumerate(zip(batch.video_ids, batch.views, batch.crops)):
            rows.append((vid, view, crop))
            video = next(v for v in videos if v.video_id == vid)
            assert int(batch.labels[i]) == video.label
            want = np.array([[frame_code(f) for f in w] for w in _clip(vid, video.num_frames, view)])
            assert np.abs(px[i, ..., 0].mean(axis=(-1, -2)) - want).max() < 3
            # Centre crop of 40 from 64 px: columns 12..51 of the ramp, unflipped.
            ramp = px[i, 0, 0, :, :, 1].mean(axis=0)
            assert abs(ramp[0] - 12 * 255 / 63) < 4 and abs(ramp[-1] - 51 * 255 / 63) < 4
    assert len(rows) == len(set(rows)) == 22
    assert set(rows) == _expected_rows(videos, 1)


def test_eval_three_crops_and_shard_subsets(split: tuple[str, list]) -> None:
    root, videos = split
    index = read_index(root)
    uris = shard_uris(root, index)
    cfg = LoaderConfig(num_workers=0, input_size=40, eval_short_side=48, eval_crops=3)
    parts = [uris[:2], uris[2:]]  # two replicas splitting the shards
    rows = []
    for part in parts:
        for batch in eval_batches(part, cfg, batch_size=4):
            assert batch.x.shape[1:] == (T, 5, 3, 48, 48)
            ramps = _pixels(batch.x)[:, 0, 0, :, :, 1].mean(axis=1)  # (R, 48)
            for i, crop in enumerate(batch.crops):
                start = {0: 0, 1: 16, 2: 8}[crop]  # (64 - 48) // 4 = 4: offsets 0, 16, 8
                assert abs(ramps[i, 0] - start * 255 / 63) < 4
                rows.append((batch.video_ids[i], batch.views[i], crop))
    assert len(rows) == len(set(rows)) == 66 and set(rows) == _expected_rows(videos, 3)


def test_s3_shards_give_the_same_batches_as_local(split: tuple[str, list], s3_server: object) -> None:
    root, videos = split
    bucket = s3_server.create_bucket("loader-test")
    remote = f"{bucket}/shards/train"
    for name in sorted(os.listdir(root)):
        storage.write_bytes_atomic(storage.join(remote, name), storage.read_bytes(os.path.join(root, name)))
    cfg = LoaderConfig(batch_size=4, num_workers=2, input_size=32)  # worker processes reading S3
    local = list(train_loader(root, cfg, 1, 2, epoch=0, seed=8))
    s3 = list(train_loader(remote, cfg, 1, 2, epoch=0, seed=8))
    assert len(local) == len(s3) == 2
    for (xa, ya), (xb, yb) in zip(local, s3):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    cfg_eval = LoaderConfig(num_workers=2, input_size=40, eval_short_side=48)
    rows = {
        (v, w) for b in eval_batches(remote, cfg_eval, batch_size=8) for v, w in zip(b.video_ids, b.views)
    }
    assert rows == {(v.video_id, w) for v in videos for w in range(2)}


def test_bad_index_and_missing_split_raise_clear_errors(
    split: tuple[str, list], tmp_path: os.PathLike
) -> None:
    with pytest.raises(FileNotFoundError, match="no shard index"):
        read_index(str(tmp_path / "nowhere"))
    root, _ = split
    index = read_index(root)
    edited = dataclasses.replace(index, num_videos=index.num_videos + 1)  # the stored checksum kept
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "index.json").write_text(edited.to_json())
    with pytest.raises(ContractError, match="index.json: checksum does not match"):
        read_index(str(bad))


def test_corrupt_frame_names_the_shard_and_sample(tmp_path: os.PathLike) -> None:
    videos = fake_videos(2)
    root = str(tmp_path / "train")
    write_split(root, videos, [2], num_segments=T, size=SIZE)
    shard = os.path.join(root, "shard-000000.tar")
    data = bytearray(open(shard, "rb").read())
    # Overwrite JPEG scan data after the first frame header (keeps the tar structure intact).
    soi = data.find(b"\xff\xda")
    data[soi + 20 : soi + 400] = b"\x00" * 380
    data[data.find(b"\xff\xd8") : data.find(b"\xff\xd8") + 2] = b"\x00\x00"
    open(shard, "wb").write(bytes(data))
    reseal_index(root)  # past the shard digest check (tests/test_shard_integrity.py covers that)
    cfg = LoaderConfig(batch_size=2, num_workers=0, input_size=32)
    with pytest.raises(ValueError, match="shard-000000.tar sample"):
        for epoch in range(2):
            list(train_loader(root, cfg, 0, 1, epoch=epoch, seed=0))


def test_eval_rescales_frames_stored_at_another_short_side(split: tuple[str, list]) -> None:
    """Frames stored at 64x48, evaluated at short side 40 / centre 32: GroupScale(40) gives 53x40, the
    centre crop starts at column 10 of it, i.e. at 12.1 of the stored frame."""
    root, _ = split
    cfg = LoaderConfig(num_workers=0, input_size=32, eval_short_side=40, eval_crops=1)
    batch = next(iter(eval_batches(root, cfg, batch_size=4)))
    assert batch.x.shape == (4, T, 5, 3, 32, 32)
    ramp = _pixels(batch.x)[:, :, :, :, :, 1].mean(axis=(1, 2, 3))  # (R, 32) green ramp along x
    scale = 255 / 63
    assert np.abs(ramp[:, 0] - (10 + 0.5) * 64 / 53 * scale).max() < 6
    assert np.abs(ramp[:, -1] - (42 - 0.5) * 64 / 53 * scale).max() < 6


def test_loader_config_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="flip"):
        LoaderConfig(flip="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eval_crops"):
        LoaderConfig(eval_crops=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="more than one pair"):
        LoaderConfig(flip="swap_labels", flip_label_pairs=[(1, 2), (2, 3)])
    with pytest.raises(ValueError, match="scales"):
        LoaderConfig(scales=(1.0, 1.5))
