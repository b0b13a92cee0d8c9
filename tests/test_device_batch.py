"""The device input path (pipeline.loading.device_batch) gives the CPU path's batch for the same samples and
boxes.

Real JPEGs (PIL, quality 90) of textured frames; the CPU path is jpeg_decode.decode_sample + normalise_uint8
(what batch_decode.decode_rows + finish run), the device path is encode_batch + decode_batch with the PIL decoder
standing in for nvJPEG. Tolerances, in grey levels (0..255) on every pixel of every row:
  - CPU path without draft: at most 1 (both resize with the same antialiased bilinear filter; rounding only),
    for whole-pixel boxes (training crops), boxes between pixels (half-resolution neighbours, eval frames
    stored at another short side), one and three crops, flipped or not;
  - CPU path with draft (its default): libjpeg's DCT downscale differs from the filter, mean at most 3.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.loading.device_batch import (
    EncodedBatch,
    PilJpegDecoder,
    decode_batch,
    encode_batch,
    make_decoder,
)
from pipeline.loading.jpeg_decode import CropTarget, decode_sample
from pipeline.loading.prefetch import DevicePrefetcher, WaitClock
from pipeline.loading.transforms import (
    IMAGENET_STD,
    CropBox,
    eval_boxes,
    multi_scale_crop_box,
    normalise_uint8,
)

W, H, T = 426, 320, 2
WINDOWS = [[0, 1, 2, 3, 4], [2, 3, 4, 5, 6]]  # overlapping windows share stored frames, as in short videos


def _frame(rng: np.random.Generator) -> np.ndarray:
    small = rng.integers(0, 256, (H // 8 + 1, W // 8 + 1, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(small).resize((W, H), Image.Resampling.BICUBIC)).astype(np.int16)
    return np.clip(smooth + rng.integers(-20, 21, (H, W, 3)), 0, 255).astype(np.uint8)


def _jpeg(pixels: np.ndarray, scale: int) -> bytes:
    img = Image.fromarray(pixels)
    if scale != 1:
        img = img.resize((W // scale, H // scale), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=90)
    return out.getvalue()


def _batch(
    rng: np.random.Generator,
    boxes: Callable[[], list[CropBox]],
    half_res: bool,
    out_size: int,
    samples: int = 3,
) -> tuple[list, int, int]:
    """(CPU-path inputs, device-path items) per sample, number of rows."""
    items, rows_total = [], 0
    for n in range(samples):
        jpegs = [_jpeg(_frame(rng), 2 if half_res and i % 2 else 1) for i in range(7)]
        rows = [(rows_total + k, b, bool(rng.integers(2))) for k, b in enumerate(boxes())]
        rows_total += len(rows)
        items.append((b"".join(jpegs), [len(j) for j in jpegs], W, H, WINDOWS, rows, f"sample {n}"))
    return items, rows_total, out_size


def _cpu_path(items: list, rows: int, out_size: int, use_draft: bool) -> torch.Tensor:
    buf = torch.empty((rows, T * 5, out_size, out_size, 3), dtype=torch.uint8)
    for frames, sizes, width, height, windows, sample_rows, _ in items:
        starts = np.cumsum([0, *sizes])
        jpegs = [frames[a:b] for a, b in zip(starts[:-1], starts[1:])]
        targets = [CropTarget(box, flip, buf[r]) for r, box, flip in sample_rows]
        decode_sample(jpegs, width, height, [p for w in windows for p in w], targets, use_draft)
    return normalise_uint8(buf.view(rows, T, 5, out_size, out_size, 3).permute(0, 1, 2, 5, 3, 4))


def _grey_levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs() * 255.0 * torch.tensor(IMAGENET_STD).view(3, 1, 1)


CASES = {
    "train crops": (lambda rng: [multi_scale_crop_box(W, H, 112, (1.0, 0.875, 0.75, 0.66), rng)], False, 112),
    "train crops, half-resolution neighbours": (
        lambda rng: [multi_scale_crop_box(W, H, 112, (1.0, 0.875, 0.75, 0.66), rng)],
        True,
        112,
    ),
    "eval centre crop, frames stored at another short side": (
        lambda rng: eval_boxes(W, H, 128, 112, 1),
        False,
        112,
    ),
    "eval three crops, half-resolution neighbours": (lambda rng: eval_boxes(W, H, 128, 112, 3), True, 128),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_device_path_equals_cpu_path_without_draft_within_one_grey_level(case: str) -> None:
    boxes, half_res, out_size = CASES[case]
    rng = np.random.default_rng(sorted(CASES).index(case))
    items, rows, out_size = _batch(rng, lambda: boxes(rng), half_res, out_size)
    cpu = _cpu_path(items, rows, out_size, use_draft=False)
    device = decode_batch(encode_batch(items, rows, out_size), PilJpegDecoder())
    assert device.shape == cpu.shape == (rows, T, 5, 3, out_size, out_size) and device.dtype == torch.float32
    diff = _grey_levels(device, cpu)
    assert float(diff.max()) <= 1.0 + 1e-3, (case, float(diff.max()))
    assert float((diff > 0.5).float().mean()) < 0.25  # almost every pixel is identical


def test_device_path_close_to_the_cpu_paths_draft_decoding() -> None:
    rng = np.random.default_rng(7)
    items, rows, out_size = _batch(rng, lambda: [multi_scale_crop_box(W, H, 112, (0.66,), rng)], False, 112)
    cpu = _cpu_path(items, rows, out_size, use_draft=True)
    device = decode_batch(encode_batch(items, rows, out_size), PilJpegDecoder())
    assert float(_grey_levels(device, cpu).mean()) <= 3.0


def test_flip_mirrors_the_row_and_rows_follow_the_window_positions() -> None:
    rng = np.random.default_rng(3)
    items, rows, out_size = _batch(rng, lambda: [CropBox(10, 20, 122, 132)], False, 112, samples=1)
    frames, sizes, width, height, windows, _, where = items[0]
    plain = decode_batch(
        encode_batch(
            [(frames, sizes, width, height, windows, [(0, CropBox(10, 20, 122, 132), False)], where)], 1, 112
        ),
        PilJpegDecoder(),
    )
    flipped = decode_batch(
        encode_batch(
            [(frames, sizes, width, height, windows, [(0, CropBox(10, 20, 122, 132), True)], where)], 1, 112
        ),
        PilJpegDecoder(),
    )
    assert torch.equal(plain.flip(-1), flipped)
    # Stored frames 2, 3, 4 are shared by both windows: window 0 positions 2..4 == window 1 positions 0..2.
    assert torch.equal(plain[0, 0, 2:5], plain[0, 1, 0:3])


def test_bad_blobs_are_rejected_with_the_sample_named() -> None:
    rng = np.random.default_rng(5)
    items, rows, out_size = _batch(rng, lambda: [CropBox(0, 0, 112, 112)], False, 112, samples=1)
    frames, sizes, width, height, windows, sample_rows, _ = items[0]
    with pytest.raises(ValueError, match="shard-000001.tar key1: frames member holds"):
        where = "shard-000001.tar key1"
        encode_batch([(frames[:-1], sizes, width, height, windows, sample_rows, where)], 1, 112)
    with pytest.raises(ValueError, match="out of range"):
        encode_batch([(frames, sizes, width, height, [[0, 1, 2, 3, 9]] * 2, sample_rows, "k")], 1, 112)
    broken = bytearray(frames)
    broken[: sizes[0]] = b"\x00" * sizes[0]
    with pytest.raises(ValueError, match="cannot decode stored JPEG 0"):
        decode_batch(
            encode_batch([(bytes(broken), sizes, width, height, windows, sample_rows, "k")], 1, 112),
            PilJpegDecoder(),
        )


def test_prefetcher_yields_decoded_batches_in_order_and_times_the_waits() -> None:
    rng = np.random.default_rng(11)
    batches: list[tuple[EncodedBatch, torch.Tensor]] = []
    for k in range(3):
        items, rows, out_size = _batch(
            rng, lambda: [multi_scale_crop_box(W, H, 64, (1.0, 0.75), rng)], False, 64, 2
        )
        batches.append((encode_batch(items, rows, out_size), torch.tensor([k, k])))
    decoder = make_decoder("cpu")
    assert isinstance(decoder, PilJpegDecoder)
    clock = WaitClock()
    got = list(clock.wrap(DevicePrefetcher(batches, "cpu", decoder)))
    assert len(DevicePrefetcher(batches, "cpu", decoder)) == 3 and len(got) == 3 and len(clock.waits) == 3
    for (encoded, y), (x_got, y_got) in zip(batches, got):
        assert torch.equal(x_got, decode_batch(encoded, decoder)) and torch.equal(y_got, y)
    stats = clock.summary(total_seconds=sum(clock.waits) * 2)
    assert stats["data_wait_frac"] == pytest.approx(0.5)
    assert 0 < stats["next_batch_p50_s"] <= stats["next_batch_p95_s"]
    # uint8 batches from the CPU path are normalised on the way, float batches only moved.
    x8 = torch.randint(0, 256, (2, T, 5, 3, 8, 8), dtype=torch.uint8)
    plain = [(x8, torch.zeros(2)), (normalise_uint8(x8), torch.zeros(2))]
    (x_out, _), (xf_out, _) = DevicePrefetcher(plain, "cpu")
    assert torch.equal(x_out, normalise_uint8(x8)) and torch.equal(xf_out, normalise_uint8(x8))
    with pytest.raises(ValueError, match="no decoder"):
        list(DevicePrefetcher(batches, "cpu"))


def test_train_and_eval_loaders_with_device_decoding_give_the_cpu_paths_batches(tmp_path) -> None:
    from pipeline.loading.config import LoaderConfig
    from pipeline.loading.eval_loader import eval_batches
    from pipeline.loading.train_loader import train_loader
    from tests.loader_shards import fake_videos, write_split

    root = str(tmp_path / "train")
    write_split(root, fake_videos(6), [3, 3], num_segments=3, size=(96, 72), half_res_neighbours=True)
    common = dict(
        batch_size=2, num_workers=1, input_size=48, eval_short_side=56, use_draft=False, decode_threads=1
    )
    cpu_cfg, dev_cfg = LoaderConfig(**common), LoaderConfig(**common, decode="device")
    decoder = PilJpegDecoder()
    cpu = list(train_loader(root, cpu_cfg, 0, 1, epoch=1, seed=3))
    dev = list(DevicePrefetcher(train_loader(root, dev_cfg, 0, 1, epoch=1, seed=3), "cpu", decoder))
    assert len(cpu) == len(dev) == 3
    for (xa, ya), (xb, yb) in zip(cpu, dev):
        assert torch.equal(ya, yb) and float(_grey_levels(xa, xb).max()) <= 1.0 + 1e-3
    for crops in (1, 3):
        cfg_cpu = LoaderConfig(**common, eval_crops=crops)
        cfg_dev = LoaderConfig(**common, eval_crops=crops, decode="device")
        for a, b in zip(eval_batches(root, cfg_cpu, 4), eval_batches(root, cfg_dev, 4), strict=True):
            assert isinstance(b.x, EncodedBatch) and a.video_ids == b.video_ids and a.crops == b.crops
            assert float(_grey_levels(a.x, decode_batch(b.x, decoder)).max()) <= 1.0 + 1e-3


def test_train_loader_workers_persist_across_epochs(tmp_path) -> None:
    from pipeline.loading.config import LoaderConfig
    from pipeline.loading.train_loader import train_loader
    from tests.loader_shards import fake_videos, write_split

    root = str(tmp_path / "train")
    write_split(root, fake_videos(6), [3, 3], num_segments=3, size=(64, 48))
    cfg = LoaderConfig(batch_size=2, num_workers=2, input_size=32, decode_threads=1)
    loader = train_loader(root, cfg, 0, 1, epoch=0, seed=1)
    epochs = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        epochs.append(list(loader))
        workers = loader._loader._iterator._workers if loader._loader is not None else []  # type: ignore[union-attr]
        if epoch == 0:
            first_pids = [w.pid for w in workers]
        assert [w.pid for w in workers] == first_pids and len(first_pids) == 2
    for epoch in (2, 0):  # each epoch's batches are those of a fresh loader for that epoch
        fresh = list(train_loader(root, cfg, 0, 1, epoch=epoch, seed=1))
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(fresh, epochs[epoch]))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(epochs[0], epochs[1]))
