"""A video file decoded for exactly the frames a sample set needs, with PyAV (frame folders: frame_folder.py).

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
from it); a non-reference one nothing else reads is dropped (BENCHMARKS.md: 13-22% of the frames on H.264).
Output is checked as it comes: each frame must map to a packet, in increasing order, no wanted index missing;
anything else (damage, odd timestamps) continues in the plain pass from the first frame not yet delivered.

No seeking: the windows span the whole video, so a seek could skip at most the part before the first window
(< 1/T of the decode) while making frame numbers depend on timestamps (unreliable in VFR files and broken
indexes). A frame's index is its ordinal in the decoder's output (presentation order), as in the official
extract-every-frame route; the skipping pass's timestamp ranks give the same numbers.

Damaged files: a packet the decoder rejects is skipped (the decoder resyncs at the next keyframe; later frame
indices shift by the frames lost, which only a damaged file suffers). When the decoder yields fewer frames
than packets were counted, the wanted indices at or past the end are served by the last decoded frame -- the
clamping the samplers already apply at the end of a video -- and ``DecodeResult`` says so (``clamped``,
``num_decoded``, ``packet_errors``). A file whose decodable part is shorter than ``min_decoded_fraction`` of
its packets is rejected instead. S3 videos are copied to a local temporary file first (one GET, then local
reads for both passes; PyAV on a remote file object issues many small GETs).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from pipeline import storage
from pipeline.shards.decode_types import (
    DecodeResult,
    FrameRequest,
    Interpolation,
    JpegEncoder,
    VideoError,
    VideoInfo,
    requests_by_index,
)
from pipeline.shards.frame_convert import FrameConverter, encode_jpeg

# Codecs with non-reference frames whose FFmpeg decoders honour skip_frame=NONREF (B-frames, in the main).
SKIPPABLE_CODECS = frozenset({"h264", "hevc", "mpeg1video", "mpeg2video", "mpeg4"})


class _NotSkippable(Exception):
    """The decoder's output stopped matching the probed timestamps: continue with a plain pass."""


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

    def __init__(
        self,
        uri: str,
        threads: int = 1,
        min_decoded_fraction: float = 0.5,
        interpolation: Interpolation = "AREA",
        skip_unneeded: bool = True,
    ) -> None:
        self.uri = os.fspath(uri)  # a str, always: __exit__ removes the local copy unless it is the source
        self.threads = threads
        self.min_decoded_fraction = min_decoded_fraction
        self._local: str | None = None
        self._info: VideoInfo | None = None
        self.skip_unneeded = skip_unneeded
        self._presentation_index: dict[int, int] | None = None  # packet pts -> index, when trustworthy
        self._converter = FrameConverter(interpolation)  # resize, rotate, JPEG; frames sized from the first
        # The probe's container, kept for the decode pass with the probe's first packet: (container, stream,
        # (pts, dts, pos, size)). An open costs a stream-info decode (~2 ms, 3-5% of a 240-line video's pass).
        self._probe_container: tuple[Any, Any, tuple] | None = None
        self.containers_opened = 0  # 1 for a probe + decode when the rewind works

    @property
    def source_size(self) -> tuple[int, int] | None:  # (width, height) as displayed, once a frame converted
        return self._converter.source_size

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
        cover = av.stream.Disposition.attached_pic
        moving = [s for s in container.streams.video if not s.disposition & cover]
        if not moving:
            kinds: list[str] = sorted({s.type for s in container.streams}) or ["none"]
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

    def frames(
        self,
        wanted: Sequence[FrameRequest],
        short_side: int,
        result: DecodeResult | None = None,
        upscale: bool = True,
    ) -> Iterator[tuple[FrameRequest, np.ndarray]]:
        """Yield (request, rgb) in increasing index order; rgb is (H, W, 3) uint8, rotated for display.

        One decode pass from the start, stopped after the last wanted index. Requests past the last
        decodable frame get the last decoded frame (see module docstring). Sizes follow ``output_size``.
        """
        for request, frame in self._decoded(wanted, result):
            yield request, self._converter.to_rgb(frame, short_side, request.scale, upscale)

    def jpegs(
        self,
        wanted: Sequence[FrameRequest],
        short_side: int,
        quality: int,
        encoder: JpegEncoder = "simplejpeg",
        result: DecodeResult | None = None,
        upscale: bool = True,
    ) -> Iterator[tuple[FrameRequest, bytes, tuple[int, int]]]:
        """Like ``frames()`` but yields (request, JPEG bytes, (height, width)) of each wanted frame.

        ``encoder="simplejpeg"`` encodes the resized YUV 4:2:0 planes directly (libjpeg-turbo through
        simplejpeg): no RGB conversion and no chroma resampling, about 2.5x less CPU per frame than
        ``"pil"`` (RGB conversion, then PIL; BENCHMARKS.md).
        """
        for request, frame in self._decoded(wanted, result):
            if encoder == "simplejpeg":
                jpeg, size = self._converter.to_yuv_jpeg(frame, short_side, request.scale, quality, upscale)
                yield request, jpeg, size
            else:
                rgb = self._converter.to_rgb(frame, short_side, request.scale, upscale)
                yield request, encode_jpeg(rgb, quality), (int(rgb.shape[0]), int(rgb.shape[1]))

    def _decoded(
        self, wanted: Sequence[FrameRequest], result: DecodeResult | None
    ) -> Iterator[tuple[FrameRequest, Any]]:
        """(request, av.VideoFrame) for each wanted index and scale: the single decode pass."""

        by_index = requests_by_index(wanted)
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

    def _skipping_pass(
        self, wanted: list[int], presentation_index: dict[int, int], result: DecodeResult
    ) -> Iterator[tuple[int, Any]]:
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
                    needed = presentation_index.get(packet.pts) in wanted_set
                    codec.skip_frame = "DEFAULT" if needed else "NONREF"
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
                        following = next(pending, None)
                        if following is None:
                            result.not_decoded = index + 1 - decoded
                            return
                        target = following
        except av.error.FFmpegError as exc:
            raise _NotSkippable from exc
        finally:
            container.close()
        raise _NotSkippable  # the stream ended before the last wanted frame

    def _plain_pass(
        self, by_index: dict[int, list[int]], info: VideoInfo, result: DecodeResult
    ) -> Iterator[tuple[FrameRequest, Any]]:
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
