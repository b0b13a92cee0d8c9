"""Tiny real video files encoded with PyAV for the decode and shard tests, plus the frame-index pattern.

Frame ``i`` is drawn as three grey bands (top to bottom) holding the base-8 digits of ``i``, so a decoded,
resized, JPEG-compressed frame still tells which source frame it came from (``read_index``). Rotated videos
show the bands along the other axis (``axis=1``).
"""

from __future__ import annotations

import fractions
import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

LEVEL_STEP = 32


def pattern(index: int, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 frame encoding ``index`` (0..511) as three bands of base-8 digits."""
    digits = [index % 8, (index // 8) % 8, index // 64]
    rgb = np.empty((height, width, 3), np.uint8)
    edges = [0, height // 3, 2 * height // 3, height]
    for band, digit in enumerate(digits):
        rgb[edges[band] : edges[band + 1]] = digit * LEVEL_STEP + LEVEL_STEP // 2
    return rgb


def read_index(rgb: np.ndarray, axis: int = 0) -> int:
    """Inverse of ``pattern``: read the bands along ``axis`` (0 = top to bottom, 1 = left to right)."""
    length = rgb.shape[axis]
    digits = []
    for band in range(3):
        centre = int((band + 0.5) * length / 3)
        lo, hi = max(0, centre - max(1, length // 12)), centre + max(1, length // 12)
        region = rgb[lo:hi] if axis == 0 else rgb[:, lo:hi]
        value = float(region.astype(np.float64).mean())
        digits.append(int(np.clip(round((value - LEVEL_STEP // 2) / LEVEL_STEP), 0, 7)))
    return digits[0] + 8 * digits[1] + 64 * digits[2]


@dataclass(frozen=True)
class Spec:
    codec: str
    pix_fmt: str
    width: int = 64
    height: int = 48
    frames: int = 24
    rotation: int | None = None  # display rotation, counter-clockwise degrees
    vfr: bool = False
    audio: bool = False
    options: tuple[tuple[str, str], ...] = ()


def encode_video(path: str | os.PathLike, spec: Spec, fmt: str | None = None) -> Path:
    """Encode ``spec.frames`` pattern frames with PyAV (optionally with an AAC track, VFR timestamps or a
    display-rotation matrix)."""
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(spec.codec, rate=25, options=dict(spec.options))
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, spec.pix_fmt
        if spec.codec in ("mpeg4", "mjpeg"):
            stream.codec_context.qscale = 2  # keep the bands' grey levels intact
            stream.codec_context.flags |= av.codec.context.Flags.qscale
        if spec.vfr:
            stream.codec_context.time_base = fractions.Fraction(1, 1000)
        if spec.rotation is not None:
            stream.set_display_rotation(spec.rotation)
        audio = out.add_stream("aac", rate=16000) if spec.audio else None
        pts = 0
        for i in range(spec.frames):
            frame = av.VideoFrame.from_ndarray(pattern(i, spec.width, spec.height), format="rgb24")
            frame = frame.reformat(format=spec.pix_fmt)
            if spec.vfr:
                frame.pts, frame.time_base = pts, fractions.Fraction(1, 1000)
                pts += (20, 55, 33, 90)[i % 4]  # irregular frame durations
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio is not None:
            _encode_silence(out, audio, seconds=1.0)
    return Path(path)


def _encode_silence(out, audio, seconds: float) -> None:
    samples = 1024
    for k in range(int(seconds * 16000 / samples)):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, k * samples
        for packet in audio.encode(frame):
            out.mux(packet)
    for packet in audio.encode():
        out.mux(packet)


def encode_audio_only(path: str | os.PathLike) -> Path:
    with av.open(str(path), "w") as out:
        _encode_silence(out, out.add_stream("aac", rate=16000), seconds=1.0)
    return Path(path)


# name -> (file name, spec): every good case of the zoo.
GOOD: dict[str, tuple[str, Spec]] = {
    "h264": ("h264.mp4", Spec("libx264", "yuv420p")),
    "mpeg4": ("mpeg4.avi", Spec("mpeg4", "yuv420p")),
    "vp9": ("vp9.webm", Spec("libvpx-vp9", "yuv420p")),
    "hevc": ("hevc.mkv", Spec("libx265", "yuv420p", options=(("x265-params", "log-level=error"),))),
    "mjpeg": ("mjpeg.avi", Spec("mjpeg", "yuvj420p")),
    "odd_444": ("odd 97x61 #1.mp4", Spec("libx264", "yuv444p", width=97, height=61, frames=12)),
    "rotated": ("rotated.mp4", Spec("libx264", "yuv420p", rotation=90, frames=12)),
    "vfr": ("vfr.mp4", Spec("libx264", "yuv420p", vfr=True, frames=20)),
    "hevc_10bit": (
        "hevc10.mkv",
        Spec("libx265", "yuv420p10le", frames=12, options=(("x265-params", "log-level=error"),)),
    ),
    "audio_track": ("with audio.mp4", Spec("libx264", "yuv420p", audio=True, frames=16)),
    "too_short": ("short.mp4", Spec("libx264", "yuv420p", frames=3)),
    # Beyond the datasets' own codecs: what users' videos and newer downloads come as.
    "av1": (
        "av1.mp4",
        Spec("libsvtav1", "yuv420p", options=(("preset", "12"), ("svtav1-params", "log-level=0"))),
    ),
    "vp8": ("vp8.webm", Spec("libvpx", "yuv420p")),
    "prores_422_10bit": ("prores.mov", Spec("prores", "yuv422p10le", frames=12)),
    "mpeg2_b_frames": ("mpeg2.mpg", Spec("mpeg2video", "yuv420p", options=(("bf", "2"),))),
}

# name -> expected quarantine stage
BAD_STAGES = {
    "audio_only": "probe",
    "zero_bytes": "open",
    "truncated": "open",
    "garbage": "open",
    "missing": "missing",
}


def make_zoo(folder: str | os.PathLike) -> tuple[dict[str, Path], dict[str, Path]]:
    """Write every good and bad case into ``folder``; returns (good name -> path, bad name -> path)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    good = {name: encode_video(folder / fname, spec) for name, (fname, spec) in GOOD.items()}
    bad: dict[str, Path] = {"audio_only": encode_audio_only(folder / "audio only.m4a")}
    bad["zero_bytes"] = folder / "zero.mp4"
    bad["zero_bytes"].write_bytes(b"")
    # mp4 keeps its index (moov) at the end: cut in half, nothing is readable.
    full = (folder / "h264.mp4").read_bytes()
    bad["truncated"] = folder / "truncated.mp4"
    bad["truncated"].write_bytes(full[: len(full) // 2])
    bad["garbage"] = folder / "garbage.avi"
    bad["garbage"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    bad["missing"] = folder / "not there.mp4"
    return good, bad


def make_frame_folder(folder: str | os.PathLike, frames: int = 14, width: int = 80, height: int = 60) -> Path:
    """A Something-Something V1 style folder of 1-based JPEG frames (00001.jpg, ...)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        Image.fromarray(pattern(i, width, height)).save(folder / f"{i + 1:05d}.jpg", quality=95)
    return folder


# name -> (file name, spec, container format): encodings with non-reference (B) frames, for the decoder's
# skip-unneeded-frames mode. 60 frames so that several mini-GOPs lie between the wanted windows.
B_FRAMES: dict[str, tuple[str, Spec, str | None]] = {
    "h264_mp4": (
        "b h264.mp4",
        Spec("libx264", "yuv420p", frames=60, options=(("bframes", "3"), ("b-pyramid", "normal"))),
        None,
    ),
    "h264_mkv_open_gop": (
        "b h264.mkv",
        Spec("libx264", "yuv420p", frames=60, options=(("x264-params", "open-gop=1:keyint=20:bframes=3"),)),
        None,
    ),
    "h264_ts": ("b h264.ts", Spec("libx264", "yuv420p", frames=60, options=(("bframes", "2"),)), "mpegts"),
    "hevc": (
        "b hevc.mkv",
        Spec("libx265", "yuv420p", frames=60, options=(("x265-params", "log-level=error:bframes=4"),)),
        None,
    ),
    "xvid_avi": ("b xvid.avi", Spec("mpeg4", "yuv420p", frames=60, options=(("bf", "2"),)), None),
    "mpeg2_ps": ("b mpeg2.mpg", Spec("mpeg2video", "yuv420p", frames=60, options=(("bf", "2"),)), "mpeg"),
}


def encode_with_still_stream(path: str | os.PathLike, frames: int = 24, cover_only: bool = False) -> Path:
    """A file whose first video stream is a one-frame picture: a cover (attached_pic, MP4) or, in MKV, a plain
    still stream; then the pattern video (or, with ``cover_only``, an audio track instead)."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        still = out.add_stream("mjpeg", rate=1)
        still.width, still.height, still.pix_fmt = 64, 48, "yuvj420p"
        if path.suffix == ".mp4":
            still.disposition = av.stream.Disposition.attached_pic
        video = out.add_stream("libx264", rate=25) if not cover_only else None
        if video is not None:
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("aac", rate=16000) if cover_only else None
        grey = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 200, np.uint8), format="rgb24")
        for packet in [*still.encode(grey.reformat(format="yuvj420p")), *still.encode()]:
            out.mux(packet)
        if video is not None:
            for i in range(frames):
                frame = av.VideoFrame.from_ndarray(pattern(i, 64, 48), format="rgb24").reformat(
                    format="yuv420p"
                )
                for packet in video.encode(frame):
                    out.mux(packet)
            for packet in video.encode():
                out.mux(packet)
        if audio is not None:
            _encode_silence(out, audio, seconds=1.0)
    return path


def make_edit_list_cut(source: str | os.PathLike, path: str | os.PathLike, hidden: int) -> Path:
    """``source`` (an MP4) remuxed without re-encoding so that its first ``hidden`` frames fall before the
    edit list's start, as a stream-copied cut leaves them: still in the file (later frames predict from
    them), flagged discard by the demuxer, never shown."""
    with av.open(str(source)) as src, av.open(str(path), "w") as out:
        stream = src.streams.video[0]
        copy = out.add_stream_from_template(stream)
        shift = hidden * round(1 / (stream.time_base * stream.average_rate))
        for packet in src.demux(stream):
            if packet.dts is None:
                continue  # the flush packet
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = copy
            out.mux(packet)
    return Path(path)


def make_damaged(
    path: str | os.PathLike, spec: Spec, broken: tuple[int, ...], fmt: str | None = None
) -> Path:
    """``spec`` encoded, then the packets ``broken`` (in file order) zeroed in place: the container and its
    packet count stay intact, the decoder rejects or misdecodes those packets (a damaged download)."""
    path = encode_video(path, spec, fmt)
    data = bytearray(path.read_bytes())
    with av.open(str(path)) as container:
        packets = [bytes(p) for p in container.demux(video=0) if p.size]
    for k in broken:
        at = data.find(packets[k])
        data[at : at + len(packets[k])] = bytes(len(packets[k]))
    path.write_bytes(bytes(data))
    return path


def make_damaged_mjpeg(
    path: str | os.PathLike, frames: int = 20, broken: tuple[int, ...] = (5, 6, 12)
) -> Path:
    """An MJPEG AVI whose packets ``broken`` are zeroed in place: the container and its packet count stay
    intact, the decoder rejects those packets (a damaged download)."""
    return make_damaged(path, Spec("mjpeg", "yuvj420p", frames=frames), broken)
