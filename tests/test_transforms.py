"""Crop geometry, flips, eval boxes, JPEG crop decoding and normalisation (pipeline/loading/transforms.py, jpeg.py)."""

from __future__ import annotations

import io
import math
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.loading.jpeg_decode import (
    CropTarget,
    FrameDecodeError,
    decode_crop,
    decode_sample,
    draft_request,
)
from pipeline.loading.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CropBox,
    crop_size_pairs,
    denormalise,
    eval_boxes,
    fixed_offsets,
    flip_decision,
    label_swap_map,
    multi_scale_crop_box,
    normalise_on_device,
    normalise_uint8,
    resized_size,
)


def _jpeg(pixels: np.ndarray, quality: int = 95) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=quality, subsampling=0)
    return out.getvalue()


def _textured(w: int, h: int, seed: int = 0) -> np.ndarray:
    """Smooth texture (JPEG-friendly) with structure in both axes."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    rng = np.random.default_rng(seed)
    img = np.stack(
        [127 + 100 * np.sin(xx / rng.uniform(5, 15) + c) * np.cos(yy / rng.uniform(5, 15)) for c in range(3)],
        -1,
    )
    return np.clip(img, 0, 255).astype(np.uint8)


def test_crop_size_pairs_follow_the_released_rule() -> None:
    # 340x256 frames, output 224: sides 256, 224, 192, 168 (224 = int(256*.875) exactly), |i - j| <= 1.
    assert crop_size_pairs(340, 256, 224, (1, 0.875, 0.75, 0.66)) == [
        (256, 256),
        (224, 256),
        (256, 224),
        (224, 224),
        (192, 224),
        (224, 192),
        (192, 192),
        (168, 192),
        (192, 168),
        (168, 168),
    ]
    # Snapping: int(320 * .66) = 211, within 2 px of nothing; int(128*.875)=112 equals 112; 113 would snap.
    assert (112, 112) in crop_size_pairs(130, 129, 112, (1, 0.875, 0.75, 0.66))  # int(129*.875)=112
    assert crop_size_pairs(130, 130, 112, (0.875,)) == [(112, 112)]  # int(113.75) = 113 -> snapped to 112


def test_fixed_offsets_are_the_13_grid_positions() -> None:
    offsets = fixed_offsets(340, 256, 224, 192)  # steps 29, 16
    assert len(offsets) == 13 and len(set(offsets)) == 13
    assert {(0, 0), (116, 0), (0, 64), (116, 64), (58, 32), (29, 16), (87, 48)} <= set(offsets)


def test_multi_scale_crop_boxes_cover_all_pairs_and_offsets_inside_the_frame() -> None:
    rng = np.random.default_rng(0)
    seen_sizes: Counter = Counter()
    seen_offsets = set()
    for _ in range(3000):
        box = multi_scale_crop_box(340, 256, 224, (1, 0.875, 0.75, 0.66), rng)
        assert box.is_integral()
        assert 0 <= box.left < box.right <= 340 and 0 <= box.top < box.bottom <= 256
        size = (int(box.width), int(box.height))
        seen_sizes[size] += 1
        if size == (192, 168):
            seen_offsets.add((box.left, box.top))
    assert set(seen_sizes) == set(crop_size_pairs(340, 256, 224, (1, 0.875, 0.75, 0.66)))
    assert min(seen_sizes.values()) > 200  # about 300 each: uniform over the 10 pairs
    assert seen_offsets == set(fixed_offsets(340, 256, 192, 168))


def test_training_crops_are_the_same_fraction_of_a_frame_stored_at_another_size() -> None:
    """Why ``upscale: false`` loses nothing: the multi-scale crop of a 320x240 frame, stored at source size,
    covers the same part of the picture as that of the frame upscaled to 427x320 (same rng draws), to within
    the released code's integer rounding (its offsets snap to quarters of the slack: at most 4 px of 427)."""
    scale = 320 / 240
    for seed in range(200):
        small = multi_scale_crop_box(320, 240, 224, (1, 0.875, 0.75, 0.66), np.random.default_rng(seed))
        large = multi_scale_crop_box(427, 320, 224, (1, 0.875, 0.75, 0.66), np.random.default_rng(seed))
        for a, b in zip(small.as_tuple(), large.as_tuple()):
            assert abs(a * scale - b) <= 4.0, (seed, small, large)


def test_crop_of_a_frame_smaller_than_the_output_stays_inside() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        box = multi_scale_crop_box(120, 100, 224, (1, 0.875, 0.75, 0.66), rng)
        assert 0 <= box.left and box.right <= 120 and 0 <= box.top and box.bottom <= 100


def test_flip_modes_and_label_swap() -> None:
    rng = np.random.default_rng(0)
    assert all(flip_decision(5, "none", [], rng) == (False, 5) for _ in range(100))
    flips = [flip_decision(5, "random", [], rng) for _ in range(2000)]
    assert all(label == 5 for _, label in flips)
    assert 850 < sum(f for f, _ in flips) < 1150
    pairs = [(86, 87), (93, 94), (166, 167)]
    for label, partner in [(86, 87), (87, 86), (94, 93), (167, 166), (3, 3)]:
        out = [flip_decision(label, "swap_labels", pairs, rng) for _ in range(200)]
        assert {lab for f, lab in out if f} == {partner} and {lab for f, lab in out if not f} == {label}
    with pytest.raises(ValueError, match="more than one pair"):
        label_swap_map([(1, 2), (2, 3)])
    with pytest.raises(ValueError, match="flip must be"):
        flip_decision(0, "sideways", [], rng)


def test_eval_boxes_one_and_three_crops() -> None:
    # Stored at short side 256: the centre crop is an integral box, exactly GroupCenterCrop(224).
    (box,) = eval_boxes(340, 256, 256, 224, 1)
    assert box.as_tuple() == (58, 16, 282, 240)
    left, centre_right = eval_boxes(340, 256, 256, 224, 3)[0], eval_boxes(340, 256, 256, 224, 3)[1:]
    assert left.as_tuple() == (0, 0, 256, 256)
    assert [b.as_tuple() for b in centre_right] == [(84, 0, 340, 256), (42, 0, 298, 256)]
    # Portrait frames: the three crops run down the longer (vertical) side.
    tops = [b.top for b in eval_boxes(256, 400, 256, 224, 3)]
    assert tops == [0, 144, 72]
    with pytest.raises(ValueError):
        eval_boxes(340, 256, 256, 224, 2)


def test_eval_box_on_a_differently_sized_frame_matches_resize_then_crop() -> None:
    """Stored at 320x240, evaluated at short side 256 / centre 224: decoding the box directly gives the
    released code's GroupScale(256) + GroupCenterCrop(224) up to resampling noise."""
    pixels = _textured(320, 240)
    data = _jpeg(pixels)
    (box,) = eval_boxes(320, 240, 256, 224, 1)
    ours = np.asarray(decode_crop(data, 320, 240, box, 224)).astype(float)
    ow, oh = resized_size(320, 240, 256)
    assert (ow, oh) == (341, 256)
    ref_img = Image.open(io.BytesIO(data)).convert("RGB").resize((ow, oh), Image.Resampling.BILINEAR)
    left, top = int(round((ow - 224) / 2.0)), int(round((oh - 224) / 2.0))
    ref = np.asarray(ref_img.crop((left, top, left + 224, top + 224))).astype(float)
    assert np.abs(ours - ref).mean() < 1.5


def test_decode_crop_is_exactly_the_released_crop_then_resize_without_draft() -> None:
    pixels = _textured(96, 72)
    data = _jpeg(pixels)
    box = CropBox(12, 6, 12 + 54, 6 + 63)
    ours = np.asarray(decode_crop(data, 96, 72, box, 40))
    ref = np.asarray(
        Image.open(io.BytesIO(data))
        .convert("RGB")
        .crop((12, 6, 66, 69))
        .resize((40, 40), Image.Resampling.BILINEAR)
    )
    assert np.array_equal(ours, ref)


def test_draft_request_keeps_the_box_at_least_the_output_size() -> None:
    for image_w, image_h in [(256, 256), (340, 256), (1280, 720), (455, 256), (97, 61)]:
        for frac in (1.0, 0.875, 0.75, 0.66, 0.4):
            box_w, box_h = int(min(image_w, image_h) * frac), int(min(image_w, image_h) * frac)
            for out in (32, 56, 112, 224):
                rw, rh = draft_request(image_w, image_h, box_w, box_h, out)
                # Pillow's choice: the largest of 1, 2, 4, 8 not above min(W // rw, H // rh).
                scale = max(s for s in (1, 2, 4, 8) if s <= max(1, min(image_w // rw, image_h // rh)))
                reduced_w = math.ceil(image_w / scale)
                assert box_w * reduced_w / image_w >= min(out, box_w) - 1e-9


def test_draft_decoding_is_used_and_stays_close() -> None:
    pixels = _textured(512, 384, seed=3)
    data = _jpeg(pixels)
    box = CropBox(64, 32, 64 + 336, 32 + 336)
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", draft_request(512, 384, box.width, box.height, 112))
    assert img.size == (256, 192)  # libjpeg decodes at 1/2: 336 / 2 = 168 >= 112
    fast = np.asarray(decode_crop(data, 512, 384, box, 112)).astype(float)
    slow = np.asarray(decode_crop(data, 512, 384, box, 112, use_draft=False)).astype(float)
    assert np.abs(fast - slow).mean() < 3.0


def test_half_resolution_frame_maps_the_box() -> None:
    pixels = _textured(128, 96, seed=5)
    full = _jpeg(pixels)
    half = _jpeg(np.asarray(Image.fromarray(pixels).resize((64, 48), Image.Resampling.BILINEAR)))
    box = CropBox(16, 8, 16 + 72, 8 + 72)
    a = np.asarray(decode_crop(full, 128, 96, box, 64)).astype(float)
    b = np.asarray(decode_crop(half, 128, 96, box, 64)).astype(float)
    assert np.abs(a - b).mean() < 6.0  # same region, less detail
    shifted = np.asarray(decode_crop(half, 128, 96, CropBox(40, 8, 112, 80), 64)).astype(float)
    assert np.abs(a - shifted).mean() > 2 * np.abs(a - b).mean()


def test_bad_frames_raise_clear_errors() -> None:
    with pytest.raises(FrameDecodeError, match="cannot decode"):
        decode_crop(b"\xff\xd8garbage", 64, 48, CropBox(0, 0, 48, 48), 32)
    png = io.BytesIO()
    Image.new("RGB", (64, 48)).save(png, format="PNG")
    with pytest.raises(FrameDecodeError, match="not JPEG"):
        decode_crop(png.getvalue(), 64, 48, CropBox(0, 0, 48, 48), 32)
    with pytest.raises(FrameDecodeError, match="metadata says"):
        decode_crop(_jpeg(_textured(64, 64)), 64, 48, CropBox(0, 0, 48, 48), 32)


def test_grayscale_jpeg_becomes_rgb() -> None:
    out = io.BytesIO()
    Image.new("L", (64, 48), 77).save(out, format="JPEG")
    img = decode_crop(out.getvalue(), 64, 48, CropBox(0, 0, 48, 48), 32)
    assert img.mode == "RGB" and np.abs(np.asarray(img).astype(int) - 77).max() <= 1


def test_normalise_matches_the_definition_on_strided_input() -> None:
    hwc = torch.randint(0, 256, (2, 3, 5, 8, 8, 3), dtype=torch.uint8)
    x = hwc.permute(0, 1, 2, 5, 3, 4)  # the loader's (N, T, 5, 3, H, W) view of its HWC buffer
    got = normalise_uint8(x)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    want = (x.float() / 255.0 - mean) / std
    assert got.is_contiguous() and got.dtype == torch.float32
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(denormalise(got), x.float(), atol=1e-3)
    assert torch.equal(normalise_on_device(x, "cpu"), got)
    assert normalise_on_device(got) is got
    with pytest.raises(TypeError):
        normalise_uint8(got)


@pytest.mark.parametrize("out_size", [40, 54])  # 54: crop == output size, no resize at all
def test_decode_sample_matches_the_per_frame_reference(out_size: int) -> None:
    """Unique frames decoded once, shared window positions, flips, a half-resolution frame and several crop
    targets: every output row equals the released per-frame crop + resize (within 1 grey level)."""
    frames = [_textured(96, 72, seed=s) for s in range(3)]
    full = [_jpeg(f) for f in frames]
    half = _jpeg(np.asarray(Image.fromarray(frames[2]).resize((48, 36), Image.Resampling.BILINEAR)))
    jpegs = [full[0], full[1], half]
    positions = [0, 0, 1, 2, 2, 1]
    # Whole-pixel boxes take the batched torch resize; the last one (an eval box mapped through a resize)
    # falls on fractional pixels and takes PIL's box resize.
    boxes = [
        (CropBox(12, 6, 66, 60), False),
        (CropBox(30, 10, 84, 64), True),
        (CropBox(12.5, 6.25, 66.5, 60.25), False),
    ]
    outs = [torch.zeros((len(positions), out_size, out_size, 3), dtype=torch.uint8) for _ in boxes]
    targets = [CropTarget(box, flip, out) for (box, flip), out in zip(boxes, outs)]
    decode_sample(jpegs, 96, 72, positions, targets)
    for (box, flip), out in zip(boxes, outs):
        for row, pos in enumerate(positions):
            ref = np.asarray(decode_crop(jpegs[pos], 96, 72, box, out_size)).astype(int)
            if flip:
                ref = ref[:, ::-1]
            diff = np.abs(out[row].numpy().astype(int) - ref)
            if pos == 2 and box.is_integral():
                # Half resolution: crop-then-resize clamps at the crop border where PIL's box resize reads
                # the pixels just outside it; inside they agree.
                assert diff[2:-2, 2:-2].max() <= 1 and diff.mean() < 1.0, (row, pos, flip)
            else:
                assert diff.max() <= 1, (row, pos, flip)
    assert not torch.equal(outs[0][0], outs[0][2])  # different frames really differ


def test_decode_sample_reports_the_bad_frame() -> None:
    out = torch.zeros((2, 32, 32, 3), dtype=torch.uint8)
    with pytest.raises(FrameDecodeError, match="JPEG 1"):
        decode_sample(
            [_jpeg(_textured(64, 48)), b"\xff\xd8nope"],
            64,
            48,
            [0, 1],
            [CropTarget(CropBox(0, 0, 48, 48), False, out)],
        )
