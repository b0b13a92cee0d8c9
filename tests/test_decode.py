"""Decoding (pipeline.shards: decode, video_file, frame_folder, frame_convert) on a zoo of real encoded
files: the right frames, at the right size and orientation."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.shards.decode import open_source
from pipeline.shards.decode_types import DecodeResult, FrameRequest, VideoError
from pipeline.shards.frame_convert import encode_jpeg, output_size
from pipeline.shards.frame_folder import FrameFolder
from pipeline.shards.video_file import VideoFile
from tests.video_zoo import (
    B_FRAMES,
    BAD_STAGES,
    GOOD,
    Spec,
    encode_video,
    encode_with_still_stream,
    make_damaged,
    make_damaged_mjpeg,
    make_edit_list_cut,
    make_frame_folder,
    make_zoo,
    read_index,
)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> tuple[dict[str, Path], dict[str, Path]]:
    return make_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_video_yields_requested_frames(zoo, name):
    good, _ = zoo
    spec = GOOD[name][1]
    with open_source(str(good[name])) as video:
        info = video.probe()
        assert info.num_frames == spec.frames  # counted from packets, declared counts are not used
        assert info.fps > 0
        wanted = sorted({0, spec.frames // 2, spec.frames - 1})
        # Duplicates and unsorted requests are allowed; each index comes once per scale, in order.
        requests = [FrameRequest(i) for i in reversed(wanted)] + [FrameRequest(wanted[0])]
        result = DecodeResult()
        got = list(video.frames(requests, short_side=32, result=result))
    # The packet count is the decoded frame count: the last packet's frame exists, nothing was clamped.
    assert result.num_decoded == spec.frames and not result.clamped
    assert [r.index for r, _ in got] == wanted
    rotated = spec.rotation in (90, -90, 270)
    for request, rgb in got:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert min(rgb.shape[:2]) == 32
        # A 90 degree display rotation turns the landscape frame into a portrait one...
        assert (rgb.shape[0] > rgb.shape[1]) == (rotated or spec.height > spec.width)
        # ...and the top band of the coded frame to the left (counter-clockwise).
        assert read_index(rgb, axis=1 if rotated else 0) == request.index


@pytest.mark.parametrize("name", sorted(BAD_STAGES))
def test_bad_input_raises_with_stage(zoo, name):
    _, bad = zoo
    with pytest.raises(VideoError) as err:
        with open_source(str(bad[name])) as video:
            video.probe()
            list(video.frames([FrameRequest(0)], short_side=32))
    assert err.value.stage == BAD_STAGES[name]
    assert str(err.value)


def test_half_scale_and_no_resize(zoo):
    good, _ = zoo
    with VideoFile(str(good["odd_444"])) as video:
        video.probe()
        got = dict(video.frames([FrameRequest(3, 1), FrameRequest(3, 2), FrameRequest(5, 2)], short_side=40))
        full = dict(video.frames([FrameRequest(4)], short_side=0))
    assert got[FrameRequest(3, 1)].shape == (40, 64, 3)  # 97x61 -> short side 40, width round(97*40/61)
    assert got[FrameRequest(3, 2)].shape == (20, 32, 3)
    assert read_index(got[FrameRequest(5, 2)]) == 5
    assert full[FrameRequest(4)].shape == (61, 97, 3)


def test_requests_past_the_decodable_end_are_clamped(zoo):
    """A file that decodes to fewer frames than needed serves the last decoded frame (documented clamp)."""
    good, _ = zoo
    with VideoFile(str(good["h264"])) as video:
        n = video.probe().num_frames
        result = DecodeResult()
        got = list(video.frames([FrameRequest(n - 2), FrameRequest(n + 3)], short_side=24, result=result))
    assert result.clamped and result.num_decoded == n
    assert [r.index for r, _ in got] == [n - 2, n + 3]
    assert read_index(got[1][1]) == n - 1
    # Far fewer decodable frames than packets is a damaged file, not a short one.
    with VideoFile(str(good["h264"]), min_decoded_fraction=0.5) as video:
        video.probe()
        video._info = type(video._info)(num_frames=10 * n, fps=25.0)  # as if most packets were undecodable
        with pytest.raises(VideoError, match="decodable") as err:
            list(video.frames([FrameRequest(5 * n)], short_side=24))
    assert err.value.stage == "decode"


def test_decode_stops_after_last_needed_frame(zoo):
    good, _ = zoo
    with VideoFile(str(good["vp9"])) as video:
        video.probe()
        result = DecodeResult()
        list(video.frames([FrameRequest(2), FrameRequest(6)], short_side=16, result=result))
    assert result.num_decoded == 7 and not result.clamped


def test_frame_folder(tmp_path):
    folder = make_frame_folder(tmp_path / "vid 1", frames=14, width=320, height=240)
    (folder / "notes.txt").write_text("not a frame")
    source = open_source(str(folder))
    assert isinstance(source, FrameFolder)
    with source:
        assert source.probe().num_frames == 14
        got = list(source.frames([FrameRequest(13), FrameRequest(0), FrameRequest(9, 2)], short_side=60))
    assert [(r.index, r.scale) for r, _ in got] == [(0, 1), (9, 2), (13, 1)]
    assert got[0][1].shape == (60, 80, 3) and got[1][1].shape == (30, 40, 3)
    assert [read_index(rgb) for _, rgb in got] == [0, 9, 13]


def test_empty_frame_folder_is_a_probe_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError) as err, open_source(str(tmp_path / "empty")) as folder:
        folder.probe()
    assert err.value.stage == "probe"


def test_output_size_and_jpeg():
    assert output_size(320, 240, 256) == (341, 256)
    assert output_size(240, 320, 256) == (256, 341)
    assert output_size(97, 61, 40, scale=2) == (32, 20)
    assert output_size(97, 61, 0) == (97, 61)
    # upscale=False: a source at or below the short side keeps its size; a larger one is still brought down.
    assert output_size(320, 240, 320, upscale=False) == (320, 240)
    assert output_size(320, 240, 320, scale=2, upscale=False) == (160, 120)
    assert output_size(240, 320, 240, upscale=False) == (240, 320)
    assert output_size(640, 480, 320, upscale=False) == (427, 320)
    rgb = np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    data = encode_jpeg(rgb, quality=95)
    from io import BytesIO

    with Image.open(BytesIO(data)) as img:
        assert img.format == "JPEG" and img.size == (50, 30)


def test_s3_video_and_frame_folder(s3_server, zoo, tmp_path):
    from pipeline import storage

    bucket = s3_server.create_bucket("decode-test")
    good, _ = zoo
    storage.write_bytes_atomic(f"{bucket}/v/odd name #1.webm", good["vp9"].read_bytes())
    folder = make_frame_folder(tmp_path / "frames", frames=6)
    for jpg in folder.iterdir():
        storage.write_bytes_atomic(f"{bucket}/ssv1/123/{jpg.name}", jpg.read_bytes())
    with open_source(f"{bucket}/v/odd name #1.webm") as video:
        assert isinstance(video, VideoFile) and video.probe().num_frames == 24
        got = list(video.frames([FrameRequest(17)], short_side=24))
    assert read_index(got[0][1]) == 17
    with open_source(f"{bucket}/ssv1/123") as frames:
        assert isinstance(frames, FrameFolder) and frames.probe().num_frames == 6
        assert read_index(next(iter(frames.frames([FrameRequest(4)], short_side=30)))[1]) == 4
    with pytest.raises(VideoError) as err, open_source(f"{bucket}/v/absent.mp4"):
        pass
    assert err.value.stage == "missing"


def test_damaged_packets_are_skipped_and_the_tail_clamped(tmp_path):
    path = make_damaged_mjpeg(tmp_path / "damaged.avi", frames=20, broken=(5, 6, 12))
    with VideoFile(str(path)) as video:
        assert video.probe().num_frames == 20  # the container still lists every packet
        result = DecodeResult()
        got = list(video.frames([FrameRequest(i) for i in (0, 4, 5, 16, 19)], short_side=24, result=result))
    assert result.packet_errors == 3 and result.num_decoded == 17 and result.clamped
    # Decoded frame k is source frame k before the first hole, then shifted by the frames lost; requests
    # past the 17 decodable frames get the last one (source frame 19).
    assert [(r.index, read_index(rgb)) for r, rgb in got] == [(0, 0), (4, 4), (5, 7), (16, 19), (19, 19)]
    with VideoFile(str(path), min_decoded_fraction=0.9) as video:
        video.probe()
        with pytest.raises(VideoError, match="only 17 of 20 frames decodable .3 undecodable packets") as err:
            list(video.frames([FrameRequest(19)], short_side=24))
    assert err.value.stage == "decode"


def _decode_all(
    path: Path, wanted: list[int], skip_unneeded: bool
) -> tuple[list[tuple[int, bytes]], DecodeResult]:
    result = DecodeResult()
    with VideoFile(str(path), skip_unneeded=skip_unneeded) as video:
        video.probe()
        out = [
            (r.index, rgb.tobytes()) for r, rgb in video.frames([FrameRequest(i) for i in wanted], 0, result)
        ]
    return out, result


# Two sparse 5-frame windows and a lone frame: most frames between them are unneeded.
SPARSE = [3, 4, 5, 6, 7, 30, 41, 42, 43, 44, 45]


@pytest.mark.parametrize("name", sorted(B_FRAMES))
def test_unneeded_non_reference_frames_are_not_decoded(tmp_path, name):
    """Where every packet has its own timestamp, unneeded B-frames are left undecoded, and the frames that
    are delivered are exactly those of a plain full decode (pixel for pixel, same indices)."""
    fname, spec, fmt = B_FRAMES[name]
    path = encode_video(tmp_path / fname, spec, fmt)
    skipped, result = _decode_all(path, SPARSE, skip_unneeded=True)
    plain, plain_result = _decode_all(path, SPARSE, skip_unneeded=False)
    assert result.not_decoded > 5 and plain_result.not_decoded == 0
    assert result.num_decoded == plain_result.num_decoded == SPARSE[-1] + 1
    assert [i for i, _ in skipped] == SPARSE
    assert skipped == plain
    assert [
        read_index(np.frombuffer(px, np.uint8).reshape(spec.height, spec.width, 3)) for _, px in skipped
    ] == SPARSE


def test_damage_in_skip_mode_continues_in_the_plain_pass(tmp_path):
    """A damaged B-frame stream: the skipping pass stops at the first mismatch and the plain pass delivers
    the rest, so the output is the plain decode's, frame for frame (indices shift after the lost frames)."""
    _, spec, _ = B_FRAMES["h264_mp4"]
    path = make_damaged(tmp_path / "damaged b.mp4", spec, broken=(20, 21))
    wanted = list(range(0, 60, 3))
    skipped, result = _decode_all(path, wanted, skip_unneeded=True)
    plain, plain_result = _decode_all(path, wanted, skip_unneeded=False)
    assert [i for i, _ in skipped] == [i for i, _ in plain] == wanted
    assert skipped == plain
    assert result.num_decoded == plain_result.num_decoded
    assert result.packet_errors == plain_result.packet_errors == 2  # counted by the plain pass...
    assert result.not_decoded == 0  # ...which finished the job: the skipping pass gave up at the damage


@pytest.mark.parametrize("skip_unneeded", [True, False])
def test_frames_hidden_by_an_edit_list_are_not_counted(tmp_path, skip_unneeded):
    """A stream-copied cut keeps the frames before its edit list's start (flagged discard, never shown):
    they are not counted, so the shown frames are numbered from 0 and nothing is clamped at the end."""
    _, spec, _ = B_FRAMES["h264_mp4"]
    cut = make_edit_list_cut(encode_video(tmp_path / "full.mp4", spec), tmp_path / "cut.mp4", hidden=7)
    result = DecodeResult()
    with VideoFile(str(cut), skip_unneeded=skip_unneeded) as video:
        assert video.probe().num_frames == spec.frames - 7
        wanted = [0, 1, 20, spec.frames - 8]
        got = list(video.frames([FrameRequest(i) for i in wanted], 0, result))
    assert not result.clamped and result.num_decoded == spec.frames - 7
    assert [(r.index, read_index(rgb)) for r, rgb in got] == [(i, i + 7) for i in wanted]
    assert (result.not_decoded > 0) == skip_unneeded


@pytest.mark.parametrize("fname", ["cover art.mp4", "still first.mkv"])
def test_a_still_picture_stream_is_not_taken_for_the_video(tmp_path, fname):
    """The one-frame picture stream listed first (cover art in MP4, a plain still stream in MKV) is passed
    over for the real video."""
    path = encode_with_still_stream(tmp_path / fname, frames=24)
    with VideoFile(str(path)) as video:
        assert video.probe().num_frames == 24
        got = [(r.index, read_index(rgb)) for r, rgb in video.frames([FrameRequest(3), FrameRequest(23)], 0)]
    assert got == [(3, 3), (23, 23)]


def test_a_cover_picture_with_audio_is_not_a_video(tmp_path):
    path = encode_with_still_stream(tmp_path / "song.mp4", cover_only=True)
    with pytest.raises(VideoError, match="no video stream besides a cover picture") as err:
        with VideoFile(str(path)) as video:
            video.probe()
    assert err.value.stage == "probe"


def test_streams_without_usable_timestamps_use_the_plain_pass(tmp_path):
    """A raw H.264 elementary stream has no packet timestamps: nothing is skipped, every frame is right."""
    spec = Spec("libx264", "yuv420p", frames=30, options=(("bframes", "3"),))
    path = encode_video(tmp_path / "raw.h264", spec, "h264")
    got, result = _decode_all(path, [2, 17, 29], skip_unneeded=True)
    assert result.not_decoded == 0
    assert [i for i, _ in got] == [2, 17, 29]
    assert [read_index(np.frombuffer(px, np.uint8).reshape(48, 64, 3)) for _, px in got] == [2, 17, 29]


@pytest.mark.parametrize("name", ["h264", "odd_444", "rotated"])
def test_simplejpeg_route_is_deterministic_at_odd_sizes(zoo, name):
    """libjpeg-turbo reads whole MCUs past the edge of odd-sized planes: the bytes there must be defined,
    or one frame encodes differently from run to run (and a resumed shard job differs from a clean one)."""
    good, _ = zoo
    wanted = [FrameRequest(i, 1) for i in range(0, 6, 2)]
    runs = set()
    for _ in range(6):
        with open_source(good[name]) as src:
            out = list(src.jpegs(wanted, 37, 90, "simplejpeg"))  # 37: an odd short side, odd chroma planes
        runs.add(tuple(jpeg for _, jpeg, _ in out))
    assert len(runs) == 1


def test_a_local_source_given_as_path_is_left_in_place(tmp_path):
    """VideoFile removes its temporary local copy of a remote video on exit; a local file is never removed,
    whether it is named by str or by Path."""
    from tests.video_zoo import GOOD, encode_video

    fname, spec = GOOD["h264"]
    video = encode_video(tmp_path / fname, spec)
    for source in (video, str(video)):
        with open_source(source) as src:
            assert src.probe().num_frames > 0
        assert video.is_file()


def _all_frames(path: Path, reuse_probe_container: bool) -> tuple[list[tuple[int, bytes]], int]:
    with VideoFile(str(path)) as video:
        count = video.probe().num_frames
        if not reuse_probe_container:
            video._drop_probe_container()
        out = [
            (r.index, rgb.tobytes()) for r, rgb in video.frames([FrameRequest(i) for i in range(count)], 0)
        ]
        return out, video.containers_opened


def test_the_decode_pass_reuses_the_probe_container(zoo, tmp_path):
    """The probe's container, rewound to its first packet, serves the decode pass (one open per video, the
    stream-info decode of a second open saved), and gives every frame exactly as a fresh open does."""
    good, _ = zoo
    files = dict(good)
    for name, (fname, spec, fmt) in B_FRAMES.items():
        files[f"b-frames {name}"] = encode_video(tmp_path / fname, spec, fmt)
    files["edit list"] = make_edit_list_cut(files["b-frames h264_mp4"], tmp_path / "cut.mp4", hidden=5)
    for name, path in sorted(files.items()):
        rewound, opened = _all_frames(path, reuse_probe_container=True)
        fresh, opened_fresh = _all_frames(path, reuse_probe_container=False)
        assert (opened, opened_fresh) == (1, 2), name
        assert rewound == fresh, name


def test_a_container_that_cannot_rewind_is_opened_afresh(tmp_path):
    """FFmpeg's raw H.264 demuxer cannot seek back to its first packet: the check after the rewind notices,
    and the decode pass opens the file again."""
    spec = Spec("libx264", "yuv420p", frames=30)
    path = encode_video(tmp_path / "raw.h264", spec, "h264")
    got, opened = _all_frames(path, reuse_probe_container=True)
    assert opened == 2
    assert [read_index(np.frombuffer(px, np.uint8).reshape(48, 64, 3)) for _, px in got] == list(range(30))


def test_a_resolution_change_midstream_keeps_the_first_frame_size(tmp_path):
    """Two MPEG-TS recordings joined byte for byte (64x48, then 96x64): every frame, and so every stored
    JPEG of a sample, comes out at the first frame's size, each with its own content."""
    first = encode_video(
        tmp_path / "a.ts", Spec("libx264", "yuv420p", width=64, height=48, frames=20), "mpegts"
    )
    second = encode_video(
        tmp_path / "b.ts", Spec("libx264", "yuv420p", width=96, height=64, frames=20), "mpegts"
    )
    joined = tmp_path / "joined.ts"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    with VideoFile(str(joined)) as video:
        assert video.probe().num_frames == 40
        got = list(video.frames([FrameRequest(i) for i in (0, 19, 20, 39)], short_side=32))
        jpegs = list(video.jpegs([FrameRequest(5), FrameRequest(30)], 32, 90))
    assert {rgb.shape for _, rgb in got} == {(32, 43, 3)}
    assert [read_index(rgb) for _, rgb in got] == [0, 19, 0, 19]  # the second recording counts from 0 again
    assert {size for _, _, size in jpegs} == {(32, 43)}


def test_a_frame_folder_with_an_odd_sized_frame_keeps_the_first_frame_size(tmp_path):
    folder = make_frame_folder(tmp_path / "mixed", frames=6, width=80, height=60)
    from tests.video_zoo import pattern

    Image.fromarray(pattern(3, 120, 72)).save(folder / "00004.jpg", quality=95)
    with FrameFolder(str(folder)) as frames:
        frames.probe()
        got = list(frames.frames([FrameRequest(i) for i in range(6)], short_side=30))
    assert {rgb.shape for _, rgb in got} == {(30, 40, 3)}
    assert [read_index(rgb) for _, rgb in got] == list(range(6))


# Pixel formats and containers beyond the zoo's main cases: grey, 16-bit grey, alpha, RGB, 4:4:4 12-bit with
# alpha, 4:2:2 10-bit H.264, old codecs (MPEG-1, FLV1, WMV2, H.263) and the two other quarter turns.
MORE_FORMATS: dict[str, tuple[str, Spec, str | None]] = {
    "gray_ffv1": ("gray.mkv", Spec("ffv1", "gray"), None),
    "gray16_ffv1": ("gray16.mkv", Spec("ffv1", "gray16le"), None),
    "vp9_alpha": ("alpha.webm", Spec("libvpx-vp9", "yuva420p"), None),
    "h264_rgb": ("rgb.mkv", Spec("libx264rgb", "bgr24"), None),
    "png_rgba": ("png.mov", Spec("png", "rgba"), None),
    "prores_4444_alpha": ("prores4444.mov", Spec("prores_ks", "yuva444p10le"), None),
    "h264_422_10bit": ("h264 422.mkv", Spec("libx264", "yuv422p10le"), None),
    "mpeg1": ("mpeg1.mpg", Spec("mpeg1video", "yuv420p"), "mpeg"),
    "flv1": ("flv1.flv", Spec("flv", "yuv420p"), None),
    "wmv2": ("wmv2.wmv", Spec("wmv2", "yuv420p"), "asf"),
    "h263": ("h263.3gp", Spec("h263", "yuv420p", width=128, height=96), None),
    "rotated_180": ("rot180.mp4", Spec("libx264", "yuv420p", rotation=180), None),
    "rotated_clockwise": ("rot-90.mp4", Spec("libx264", "yuv420p", rotation=-90), None),
}


def _upright(rgb: np.ndarray, rotation: int | None) -> np.ndarray:
    """Undo a display rotation so ``read_index`` reads the coded frame's bands top to bottom."""
    return np.ascontiguousarray(np.rot90(rgb, k=-int(round((rotation or 0) / 90))))


@pytest.mark.parametrize("name", sorted(MORE_FORMATS))
def test_more_pixel_formats_and_codecs_give_the_right_frames(tmp_path, name):
    fname, spec, fmt = MORE_FORMATS[name]
    path = encode_video(tmp_path / fname, spec, fmt)
    wanted = [0, 7, spec.frames - 1]
    with VideoFile(str(path)) as video:
        assert video.probe().num_frames == spec.frames
        got = list(video.jpegs([FrameRequest(i) for i in wanted], 32, 95))
    for (request, jpeg, (height, width)), index in zip(got, wanted):
        rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
        assert rgb.shape[:2] == (height, width) and min(height, width) == 32
        assert (height > width) == (spec.rotation in (90, -90, 270))
        assert request.index == index and read_index(_upright(rgb, spec.rotation)) == index
