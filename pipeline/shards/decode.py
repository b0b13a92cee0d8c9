"""Decoding exactly the frames a sample set needs: PyAV for video files, PIL for JPEG frame folders (SSv1).

Each video is read in two cheap-then-once passes:

1. ``probe()`` counts the video stream's packets by demuxing only (no decoding, ~1-2% of a decode pass),
   leaving out packets flagged discard (before an MP4 edit list's start: decoded, never shown).
   Declared frame counts are not used: VP9/WebM and HEVC/MKV declare 0 and AVI headers can lie.
2. ``frames(wanted)`` / ``jpegs(wanted)`` decode forward from the start in a single pass, convert only the
   wanted frames (swscale: resize in the source pixel format, then to RGB, or straight to full-range YUV
   4:2:0 for the YUV JPEG encoder; any pixel format: 10-bit, 4:4:4, yuvj, rgb), apply the rotation metadata
   and stop after the last wanted frame. Nothing but the current frame is held. The pass reuses the probe's
   container, sought back to the start, when the first packet read after the seek is the probe's first
   packet (else, as for raw elementary streams, the file is opened again): an open runs a stream-info
   decode of its own. Output sizes come from the first converted frame's size, so a stream whose resolution
   changes midway (joined recordings) still gives every frame of a video the same size.

Frames nobody needs are not decoded when that is provably safe: for codecs with non-reference frames
(H.264, HEVC, MPEG-1/2/4 B-frames) whose packets all carry distinct timestamps, each packet's presentation
index is its timestamp's rank among the probe's packets, and a packet no request needs is sent with the
decoder's ``skip_frame = NONREF``. A reference frame is decoded whatever the setting (later frames predict
from it); a non-reference one nothing else reads is dropped (BENCHMARKS.md: 13-22% of the frames on H.264). The output
is checked as it comes: every frame must map to a packet, in increasing order, with no wanted index missing;
anything else (damage, odd timestamps) continues in the plain pass from the first frame not yet delivered.

There is no seeking: the sampled windows of action-recognition clips span the whole video, so a seek could
skip at most the part before the first window (< 1/T of the decode) while making frame numbering depend on
timestamps, which VFR files and broken indexes make unreliable. A frame's index is its ordinal in the
decoder's output (presentation order), the same numbering the official extract-every-frame route produces;
the skipping pass numbers frames by timestamp rank, which gives the same numbers for a well-formed stream.

Damaged files: a packet the decoder rejects is skipped (the decoder resyncs at the next keyframe; later
frame indices shift by the frames lost, which only a damaged file suffers). When the decoder yields fewer
frames than packets were counted, the wanted indices at or past the end are served by the last decoded
frame -- the clamping the samplers already apply at the end of a video -- and ``DecodeResult`` says so
(``clamped``, ``num_decoded``, ``packet_errors``). A file whose decodable part is shorter than
``min_decoded_fraction`` of its packets is rejected instead.

S3 videos are copied to a local temporary file first (one GET, then local reads for both passes); PyAV
reading through a remote file object would issue many small ranged GETs.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Literal

import numpy as np

from pipeline import storage

Stage = Literal["missing", "open", "probe", "decode"]
Interpolation = Literal["AREA", "BILINEAR", "BICUBIC"]
JpegEncoder = Literal["pil", "simplejpeg"]

JPEG_SUFFIXES = (".jpg", ".jpeg")
# Codecs with non-reference frames whose FFmpeg decoders honour skip_frame=NONREF (B-frames, in the main).
SKIPPABLE_CODECS = frozenset({"h264", "hevc", "mpeg1video", "mpeg2video", "mpeg4"})


class VideoError(Exception):
    """A video that cannot be used; ``stage`` says where it failed (goes to the quarantine report)."""

    def __init__(self, stage: Stage, message: str) -> None:
        super().__init__(message)
        self.stage: Stage = stage


class _NotSkippable(Exception):
    """The decoder's output stopped matching the probed timestamps: continue with a plain pass."""


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int  # counted video packets (or JPEG files), not the container's declared count
    fps: float  # average frame rate, 0.0 when unknown


@dataclass(frozen=True)
class FrameRequest:
    """One frame to produce: source index and scale (1 = short side ``short_side``, 2 = half of that)."""

    index: int
    scale: int = 1


def output_size(width: int, height: int, short_side: int, scale: int = 1, upscale: bool = True) -> tuple[int, int]:
    """(width, height) with the shorter side resized to ``short_side // scale`` (0 keeps the source size;
    with ``upscale=False`` so does a source whose shorter side is already ``short_side`` or less).

    Rotation by 90 degrees swaps width and height but not the shorter side, so this is computed on the
    coded frame and the rotation applied afterwards.
    """
    if short_side <= 0 or (not upscale and min(width, height) <= short_side):
        return max(1, width // scale), max(1, height // scale)
    target = max(1, short_side // scale)
    if height <= width:
        return max(1, round(width * target / height)), target
    return target, max(1, round(height * target / width))


def rotate(rgb: np.ndarray, degrees_ccw: float) -> np.ndarray:
    """Apply a display rotation (counter-clockwise degrees, PyAV's ``frame.rotation``) to (H, W, 3)."""
    quarter_turns = int(round(degrees_ccw / 90.0)) % 4
    if quarter_turns == 0:
        return rgb
    return np.ascontiguousarray(np.rot90(rgb, k=quarter_turns))


def rotated_view(plane: np.ndarray, degrees_ccw: float) -> np.ndarray:
    """``rotate`` for one (H, W) image plane, as a view (no copy)."""
    quarter_turns = int(round(degrees_ccw / 90.0)) % 4
    return np.rot90(plane, k=quarter_turns) if quarter_turns else plane


def _requests_by_index(wanted: Sequence[FrameRequest]) -> dict[int, list[int]]:
    by_index: dict[int, list[int]] = {}
    for req in wanted:
        if req.index < 0:
            raise ValueError(f"negative frame index {req.index}")
        scales = by_index.setdefault(req.index, [])
        if req.scale not in scales:
            scales.append(req.scale)
    return {i: sorted(s) for i, s in sorted(by_index.items())}


@dataclass
class DecodeResult:
    """Filled while ``frames()`` runs: how many source frames were decoded and whether any were clamped."""

    num_decoded: int = 0
    clamped: bool = False
    packet_errors: int = 0  # packets the decoder rejected and skipped
    not_decoded: int = 0  # unneeded non-reference frames the decoder was told to skip


def _decode_skipping_bad_packets(packets: Iterator, stream, errors: list[str]) -> Iterator:
    """Decoded frames in presentation order. A packet the decoder rejects is skipped (the decoder resyncs
    at the next keyframe) and noted in ``errors``; a demuxing error ends the stream like end of file."""
    import av

    try:
        for packet in packets:
            try:
                frames = stream.decode(packet)  # the final empty packet flushes the decoder
            except av.error.FFmpegError as exc:
                errors.append(str(exc.strerror or exc))
                continue
            yield from frames
    except av.error.FFmpegError as exc:
        errors.append(str(exc.strerror or exc))


def _packet_key(packet) -> tuple:
    """What identifies a demuxed packet when a rewound container is checked against the probe."""
    return (packet.pts, packet.dts, packet.pos, packet.size)


class VideoFile:
    """A video file (local path or s3:// URI) opened for ``probe()`` then one ``frames()`` pass.

    Use as a context manager; the local copy of an S3 object is removed on exit.
    """

    def __init__(self, uri: str, threads: int = 1, min_decoded_fraction: float = 0.5,
                 interpolation: Interpolation = "AREA", skip_unneeded: bool = True) -> None:  # fmt: skip
        # A str, always: __exit__ removes the local copy only when it is not the source itself.
        self.uri = os.fspath(uri)
        self.threads = threads
        self.min_decoded_fraction = min_decoded_fraction
        self.interpolation = interpolation
        self._local: str | None = None
        self._info: VideoInfo | None = None
        self.skip_unneeded = skip_unneeded
        self._presentation_index: dict[int, int] | None = None  # packet pts -> index, when trustworthy
        self._reformatters: dict[tuple, Any] = {}
        self._padded_planes: dict[tuple[int, int, int], np.ndarray] = {}
        # The probe's container, kept for the decode pass with the probe's first packet: (container, stream,
        # (pts, dts, pos, size)). Opening costs a stream-info decode of its own (~2 ms, 3-5% of a 240-line
        # video's decode pass).
        self._probe_container: tuple[Any, Any, tuple] | None = None
        self.containers_opened = 0  # 1 for a probe + decode when the rewind works
        # Coded (width, height) of the first frame converted: every later frame is sized from it, so a stream
        # whose resolution changes midway (joined recordings, adaptive-bitrate captures) still gives one
        # frame size per video, as samples and the loader's crop boxes need.
        self._first_coded_size: tuple[int, int] | None = None

    def __enter__(self) -> VideoFile:
        try:
            size = storage.file_size(self.uri)
        except FileNotFoundError as exc:
            raise VideoError("missing", f"file not found: {self.uri}") from exc
        if size == 0:
            raise VideoError("open", "empty file (0 bytes)")
        try:
            self._local = storage.download_to_temp(self.uri, suffix=os.path.splitext(self.uri)[1])
        except OSError as exc:
            raise VideoError("missing", f"cannot read: {exc}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        self._drop_probe_container()
        if self._local is not None and self._local != self.uri and os.path.exists(self._local):
            os.remove(self._local)
        self._local = None

    def _open(self):  # -> (container, stream)
        import av

        assert self._local is not None, "use VideoFile as a context manager"
        self.containers_opened += 1
        try:
            container = av.open(self._local, metadata_errors="ignore")
        except (av.error.FFmpegError, UnicodeDecodeError) as exc:
            # strerror leaves out the (temporary, for S3) file name, keeping reports reproducible.
            reason = getattr(exc, "strerror", None) or str(exc)
            raise VideoError("open", f"not a readable media file: {reason}") from exc
        # A cover picture (an attached_pic "video" stream of one frame, as music files and some downloads
        # carry) is not the video; among several real video streams, FFmpeg's choice (as its CLI makes).
        moving = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not moving:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            still = " besides a cover picture" if container.streams.video else ""
            container.close()
            raise VideoError("probe", f"no video stream{still} (streams: {', '.join(kinds)})")
        best = container.streams.best("video")
        return container, best if best in moving else moving[0]

    def probe(self) -> VideoInfo:
        """Count the video packets without decoding them; fps from the stream's average rate."""
        import av

        self._drop_probe_container()
        container, stream = self._open()
        count = 0
        first: tuple | None = None
        timestamps: list[int] | None = [] if stream.codec_context.name in SKIPPABLE_CODECS else None
        try:
            for packet in container.demux(stream):
                if first is None and packet.size > 0:
                    first = _packet_key(packet)
                # Demux ends with an empty flush packet. A discard packet (before an MP4 edit list's start, as
                # a stream-copied cut leaves) is decoded as a reference but never output: not a frame.
                if packet.size > 0 and not packet.is_discard:
                    count += 1
                    if timestamps is not None:
                        if packet.pts is None:
                            timestamps = None
                        else:
                            timestamps.append(packet.pts)
        except av.error.FFmpegError as exc:
            # A damaged tail: keep what was read so far, decoding will confirm it.
            timestamps = None
            if count == 0:
                container.close()
                raise VideoError("probe", f"cannot read packets: {exc.strerror or exc}") from exc
        except BaseException:
            container.close()
            raise
        rate = stream.average_rate or stream.guessed_rate
        if first is None:  # no packet with data: count is 0 too
            container.close()
            raise VideoError("probe", "video stream has no packets")
        self._probe_container = (container, stream, first)
        self._info = VideoInfo(num_frames=count, fps=float(rate) if rate else 0.0)
        self._presentation_index = None
        if timestamps is not None and len(set(timestamps)) == count:
            self._presentation_index = {pts: i for i, pts in enumerate(sorted(timestamps))}
        return self._info

    def frames(self, wanted: Sequence[FrameRequest], short_side: int, result: DecodeResult | None = None,
               upscale: bool = True) -> Iterator[tuple[FrameRequest, np.ndarray]]:  # fmt: skip
        """Yield (request, rgb) in increasing index order; rgb is (H, W, 3) uint8, rotated for display.

        One decode pass from the start, stopped after the last wanted index. Requests past the last
        decodable frame get the last decoded frame (see module docstring). Sizes follow ``output_size``.
        """
        for request, frame in self._decoded(wanted, result):
            yield request, self._convert(frame, short_side, request.scale, upscale)

    def jpegs(self, wanted: Sequence[FrameRequest], short_side: int, quality: int,
              encoder: JpegEncoder = "simplejpeg", result: DecodeResult | None = None,
              upscale: bool = True) -> Iterator[tuple[FrameRequest, bytes, tuple[int, int]]]:  # fmt: skip
        """Like ``frames()`` but yields (request, JPEG bytes, (height, width)) of each wanted frame.

        ``encoder="simplejpeg"`` encodes the resized YUV 4:2:0 planes directly (libjpeg-turbo through
        simplejpeg): no RGB conversion and no chroma resampling, about 2.5x less CPU per frame than
        ``"pil"`` (RGB conversion, then PIL; BENCHMARKS.md).
        """
        for request, frame in self._decoded(wanted, result):
            if encoder == "simplejpeg":
                yield request, *self._yuv_jpeg(frame, short_side, request.scale, quality, upscale)
            else:
                rgb = self._convert(frame, short_side, request.scale, upscale)
                yield request, encode_jpeg(rgb, quality), (int(rgb.shape[0]), int(rgb.shape[1]))

    def _decoded(self, wanted: Sequence[FrameRequest], result: DecodeResult | None) -> Iterator[tuple[FrameRequest, Any]]:
        """(request, av.VideoFrame) for each wanted index and scale: the single decode pass."""

        by_index = _requests_by_index(wanted)
        if not by_index:
            return
        result = result if result is not None else DecodeResult()
        info = self._info or self.probe()
        delivered = -1
        if self.skip_unneeded and self._presentation_index is not None:
            try:
                for index, frame in self._skipping_pass(sorted(by_index), self._presentation_index, result):
                    for scale in by_index[index]:
                        yield FrameRequest(index, scale), frame
                    delivered = index
                result.num_decoded = delivered + 1
                return
            except _NotSkippable:
                pass  # the plain pass takes over after the frames already delivered
        remaining = {i: scales for i, scales in by_index.items() if i > delivered}
        yield from self._plain_pass(remaining, info, result)

    def _open_decoder(self):  # -> (container, stream, packets)
        """A container ready to decode from the first packet: the probe's, rewound, when the rewind is
        verified to land on the probe's first packet, else a fresh open. ``packets`` is the demux iterator
        to decode from (it starts with the packet the verification read)."""
        rewound = self._rewind_probe_container()
        if rewound is None:
            container, stream = self._open()
            packets = container.demux(stream)
        else:
            container, stream, packets = rewound
        stream.codec_context.thread_count = self.threads
        if self.threads != 1:
            stream.thread_type = "AUTO"
        return container, stream, packets

    def _rewind_probe_container(self):  # -> (container, stream, packets) | None
        import av

        held, self._probe_container = self._probe_container, None
        if held is None:
            return None
        container, stream, first = held
        pts, dts = first[0], first[1]
        target = dts if dts is not None else pts  # the demuxer's index is by dts where it has one
        try:
            if target is None:
                raise ValueError("first packet has no timestamp")
            container.seek(target, backward=True, any_frame=True, stream=stream)
            packets = container.demux(stream)
            packet = next(packets)
        except (av.error.FFmpegError, ValueError, StopIteration):
            container.close()
            return None
        if _packet_key(packet) != first:
            # Not every demuxer seeks back exactly (raw streams, some indexes): read the file afresh.
            container.close()
            return None
        return container, stream, itertools.chain([packet], packets)

    def _drop_probe_container(self) -> None:
        held, self._probe_container = self._probe_container, None
        if held is not None:
            held[0].close()

    def _skipping_pass(self, wanted: list[int], presentation_index: dict[int, int],
                       result: DecodeResult) -> Iterator[tuple[int, Any]]:  # fmt: skip
        """(index, frame) for the sorted ``wanted`` indices, non-reference frames nobody needs left undecoded.

        Raises ``_NotSkippable`` as soon as the output stops matching the probe (a frame with an unknown or
        out-of-order timestamp, a wanted frame missing, a decoding error, an early end); every frame yielded
        before that is the right one.
        """
        import av

        wanted_set = set(wanted)
        pending = iter(wanted)
        target = next(pending)
        previous = -1
        decoded = 0
        container, stream, packets = self._open_decoder()
        codec = stream.codec_context
        try:
            for packet in packets:
                if packet.pts is not None:  # the final flush packet has none
                    codec.skip_frame = "DEFAULT" if presentation_index.get(packet.pts) in wanted_set else "NONREF"
                try:
                    frames = stream.decode(packet)
                except av.error.FFmpegError as exc:
                    raise _NotSkippable from exc
                for frame in frames:
                    index = presentation_index.get(frame.pts, -1)
                    if index <= previous or index > target:
                        raise _NotSkippable
                    previous = index
                    decoded += 1
                    if index == target:
                        yield index, frame
                        target = next(pending, None)
                        if target is None:
                            result.not_decoded = index + 1 - decoded
                            return
        except av.error.FFmpegError as exc:
            raise _NotSkippable from exc
        finally:
            container.close()
        raise _NotSkippable  # the stream ended before the last wanted frame

    def _plain_pass(self, by_index: dict[int, list[int]], info: VideoInfo,
                    result: DecodeResult) -> Iterator[tuple[FrameRequest, Any]]:  # fmt: skip
        """Every frame decoded, a frame's index its ordinal in the output; see the module docstring."""
        if not by_index:
            return
        last_wanted = max(by_index)
        container, stream, packets = self._open_decoder()
        pending = iter(by_index.items())
        target, scales = next(pending)
        previous = None
        count = 0
        errors: list[str] = []
        try:
            for frame in _decode_skipping_bad_packets(packets, stream, errors):
                index = count
                count += 1
                previous = frame
                if index < target:
                    continue
                for scale in scales:
                    yield FrameRequest(index, scale), frame
                if index >= last_wanted:
                    break
                target, scales = next(pending)
        finally:
            container.close()
        result.num_decoded = count
        result.packet_errors = len(errors)
        if count > last_wanted:
            return
        # Fewer frames than needed: a damaged or truncated file.
        reason = f" ({len(errors)} undecodable packets, first: {errors[0]})" if errors else ""
        if count == 0:
            raise VideoError("decode", f"no decodable frames{reason}")
        if count < self.min_decoded_fraction * info.num_frames:
            raise VideoError("decode", f"only {count} of {info.num_frames} frames decodable{reason}")
        result.clamped = True
        assert previous is not None
        for index, scales in by_index.items():
            if index >= count:
                for scale in scales:
                    yield FrameRequest(index, scale), previous

    def _reformat(self, frame, width: int, height: int, fmt: str | None, dst_colorspace: str | None = None):
        """``frame.reformat`` through one cached reformatter per output (size, format): ``frame.reformat``
        builds a new swscale context per call, whose set-up cost more than the scaling itself (0.30 vs
        0.05 ms per 427x320 frame here). swscale runs on this thread: its default slice threads cost
        ~0.04 ms of hand-over per call and the task already has its one CPU busy."""
        from av.video.reformatter import VideoReformatter

        key = (frame.width, frame.height, frame.format.name, width, height, fmt, dst_colorspace)
        reformatter = self._reformatters.get(key)
        if reformatter is None:
            reformatter = self._reformatters[key] = VideoReformatter()
        return reformatter.reformat(frame, width=width, height=height, format=fmt, interpolation=self.interpolation,
                                    dst_colorspace=dst_colorspace, threads=1)  # fmt: skip

    def _output_size(self, frame, short_side: int, scale: int, upscale: bool) -> tuple[int, int]:
        if self._first_coded_size is None:
            self._first_coded_size = (frame.width, frame.height)
        return output_size(*self._first_coded_size, short_side, scale, upscale)

    def _convert(self, frame, short_side: int, scale: int, upscale: bool) -> np.ndarray:
        width, height = self._output_size(frame, short_side, scale, upscale)
        # Resize in the source pixel format, then convert to RGB at the output size: swscale's scaling and
        # RGB conversion in one call take a slow generic path (about twice the two steps). Any pixel format
        # (10-bit, 4:4:4, yuvj, rgb) goes through the same two calls.
        rotation = frame.rotation
        if (width, height) != (frame.width, frame.height):
            frame = self._reformat(frame, width, height, None)
        rgb = self._reformat(frame, width, height, "rgb24")
        return rotate(rgb.to_ndarray(), rotation)

    def _yuv_jpeg(self, frame, short_side: int, scale: int, quality: int,
                  upscale: bool) -> tuple[bytes, tuple[int, int]]:  # fmt: skip
        import simplejpeg

        width, height = self._output_size(frame, short_side, scale, upscale)
        rotation = frame.rotation
        # Full-range BT.601 4:2:0 at the output size, as JPEG stores it; one swscale call (scale, range and,
        # for BT.709 sources, the matrix: without dst_colorspace a saturated red came back 15 levels off).
        yuv = self._reformat(frame, width, height, "yuvj420p", dst_colorspace="ITU601")
        planes = [
            self._edge_padded(slot, rotated_view(np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[: p.height, : p.width], rotation))
            for slot, p in enumerate(yuv.planes)
        ]
        jpeg = simplejpeg.encode_jpeg_yuv_planes(planes[0], planes[1], planes[2], quality=quality)
        return jpeg, (int(planes[0].shape[0]), int(planes[0].shape[1]))


    def _edge_padded(self, slot: int, plane: np.ndarray, pad: int = 16) -> np.ndarray:
        """``plane`` copied into a reused buffer padded by edge replication; returns the plane's view of it.

        libjpeg-turbo reads whole MCUs, so for odd sizes it reads past the last column/row of a plane: those
        bytes must be defined, or the same frame encodes to different JPEGs from run to run (measured: 2
        distinct outputs in 20 encodes of one 85x64 frame; with this padding, 1). One buffer per plane and
        size is reused frame after frame (the encoder copies out what it needs): ``np.pad`` allocating a
        fresh one cost 0.15 ms per 427x320 frame, as much as half the JPEG encoding.
        """
        height, width = plane.shape
        buffer = self._padded_planes.get((slot, height, width))
        if buffer is None:
            buffer = self._padded_planes[(slot, height, width)] = np.empty((height + pad, width + pad), np.uint8)
        buffer[:height, :width] = plane
        buffer[:height, width:] = plane[:, width - 1 :]
        buffer[height:] = buffer[height - 1]
        return buffer[:height, :width]


def _natural_key(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


class FrameFolder:
    """A folder of JPEG frames (Something-Something V1: 00001.jpg, ...), frame i = the i-th file in
    natural name order. Only the wanted files are read; PIL's draft mode decodes them at a reduced DCT
    scale when the output is much smaller than the stored frame."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._files: list[str] = []
        self._first_size: tuple[int, int] | None = None  # every frame is sized from the first (as VideoFile)

    def __enter__(self) -> FrameFolder:
        files = [f for f in storage.list_files(self.uri) if f.lower().endswith(JPEG_SUFFIXES)]
        self._files = sorted(files, key=lambda f: _natural_key(os.path.basename(f)))
        return self

    def __exit__(self, *exc: object) -> None:
        self._files = []

    def probe(self) -> VideoInfo:
        if not self._files:
            raise VideoError("probe", f"no JPEG frames in folder {self.uri}")
        return VideoInfo(num_frames=len(self._files), fps=0.0)

    def frames(self, wanted: Sequence[FrameRequest], short_side: int, result: DecodeResult | None = None,
               upscale: bool = True) -> Iterator[tuple[FrameRequest, np.ndarray]]:  # fmt: skip
        from PIL import Image

        result = result if result is not None else DecodeResult()
        for index, scales in _requests_by_index(wanted).items():
            if index >= len(self._files):
                raise VideoError("decode", f"frame {index} requested from a folder of {len(self._files)}")
            path = self._files[index]
            try:
                with Image.open(BytesIO(storage.read_bytes(path))) as img:
                    if self._first_size is None:
                        self._first_size = (img.width, img.height)
                    width, height = output_size(*self._first_size, short_side, min(scales), upscale)
                    img.draft("RGB", (width, height))
                    rgb_img = img.convert("RGB")
                    rgb_img.load()
            except OSError as exc:
                raise VideoError("decode", f"{os.path.basename(path)}: {exc}") from exc
            for scale in scales:
                size = output_size(*self._first_size, short_side, scale, upscale)
                resized = rgb_img if rgb_img.size == size else rgb_img.resize(size, Image.Resampling.BILINEAR)
                yield FrameRequest(index, scale), np.asarray(resized)
            result.num_decoded = index + 1

    def jpegs(self, wanted: Sequence[FrameRequest], short_side: int, quality: int,
              encoder: JpegEncoder = "simplejpeg", result: DecodeResult | None = None,
              upscale: bool = True) -> Iterator[tuple[FrameRequest, bytes, tuple[int, int]]]:  # fmt: skip
        """(request, JPEG bytes, (height, width)); stored frames are re-encoded with PIL whatever
        ``encoder`` says (their pixels are RGB already, and frame folders are small)."""
        for request, rgb in self.frames(wanted, short_side, result, upscale):
            yield request, encode_jpeg(rgb, quality), (int(rgb.shape[0]), int(rgb.shape[1]))


def open_source(uri: str, threads: int = 1, min_decoded_fraction: float = 0.5,
                skip_unneeded: bool = True) -> VideoFile | FrameFolder:  # fmt: skip
    """A ``VideoFile`` or, for a directory, a ``FrameFolder``; both are context managers with
    ``probe()`` and ``frames()``."""
    if storage.is_dir(uri):
        return FrameFolder(uri)
    return VideoFile(uri, threads=threads, min_decoded_fraction=min_decoded_fraction, skip_unneeded=skip_unneeded)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 -> JPEG bytes with PIL (libjpeg-turbo). PyAV's mjpeg encoder fed yuvj420p was no
    faster (0.8-1.1 vs 0.75-1.0 ms per 426x320 frame, resize included; BENCHMARKS.md); the
    simplejpeg YUV-planes route of ``VideoFile.jpegs`` is the fast one."""
    from PIL import Image

    buf = BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
