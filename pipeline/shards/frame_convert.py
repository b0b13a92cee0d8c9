"""Decoded frames -> the sizes and pixels a shard stores: the output-size rule, display rotation, and the two
conversions of a PyAV frame (to RGB, or straight to a JPEG from full-range YUV 4:2:0 planes).

    av.VideoFrame (any pixel format, coded size)
      --FrameConverter.to_rgb------> (H, W, 3) uint8, short side resized, rotated for display
      --FrameConverter.to_yuv_jpeg-> JPEG bytes and (H, W), encoded by simplejpeg from the YUV planes
    (H, W, 3) uint8 --encode_jpeg--> JPEG bytes (PIL)

One ``FrameConverter`` serves one video: it sizes every frame from the first one it converts and keeps its
swscale contexts and padded plane buffers from frame to frame.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import numpy as np

from pipeline.shards.decode_types import Interpolation


def output_size(
    width: int, height: int, short_side: int, scale: int = 1, upscale: bool = True
) -> tuple[int, int]:
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


def _plane_view(plane) -> np.ndarray:
    """The (H, W) uint8 pixels of one plane of an 8-bit av.VideoFrame, its line padding left out."""
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: plane.height, : plane.width]


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 -> JPEG bytes with PIL (libjpeg-turbo). PyAV's mjpeg encoder fed yuvj420p was no
    faster (0.8-1.1 vs 0.75-1.0 ms per 426x320 frame, resize included; BENCHMARKS.md); the
    simplejpeg YUV-planes route of ``VideoFile.jpegs`` is the fast one."""
    from PIL import Image

    buf = BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class FrameConverter:
    """Converts the decoded frames of one video, all sized from the first frame converted."""

    def __init__(self, interpolation: Interpolation = "AREA") -> None:
        self.interpolation = interpolation
        self._reformatters: dict[tuple, Any] = {}
        self._padded_planes: dict[tuple[int, int, int], np.ndarray] = {}
        # Coded (width, height) of the first frame converted: every later frame is sized from it, so a stream
        # whose resolution changes midway (joined recordings, adaptive-bitrate captures) still gives one
        # frame size per video, as samples and the loader's crop boxes need.
        self._first_coded_size: tuple[int, int] | None = None
        # (width, height) of the first frame as displayed (its rotation applied): the source frame's pixels,
        # which a crop box mapped back to the video is given in (predict's Grad-CAM, cam.json)
        self.source_size: tuple[int, int] | None = None

    def to_rgb(self, frame, short_side: int, scale: int, upscale: bool) -> np.ndarray:
        """av.VideoFrame -> (H, W, 3) uint8 at ``output_size`` of the first frame, rotated for display."""
        width, height = self._output_size(frame, short_side, scale, upscale)
        # Resize in the source pixel format, then convert to RGB at the output size: swscale's scaling and
        # RGB conversion in one call take a slow generic path (about twice the two steps). Any pixel format
        # (10-bit, 4:4:4, yuvj, rgb) goes through the same two calls.
        rotation = frame.rotation
        if (width, height) != (frame.width, frame.height):
            frame = self._reformat(frame, width, height, None)
        rgb = self._reformat(frame, width, height, "rgb24")
        return rotate(rgb.to_ndarray(), rotation)

    def to_yuv_jpeg(
        self, frame, short_side: int, scale: int, quality: int, upscale: bool
    ) -> tuple[bytes, tuple[int, int]]:
        """av.VideoFrame -> (JPEG bytes, (height, width)), encoded from the resized, rotated YUV 4:2:0
        planes."""
        import simplejpeg
        from av.video.reformatter import Colorspace

        width, height = self._output_size(frame, short_side, scale, upscale)
        rotation = frame.rotation
        # Full-range BT.601 4:2:0 at the output size, as JPEG stores it; one swscale call (scale, range and,
        # for BT.709 sources, the matrix: without dst_colorspace a saturated red came back 15 levels off).
        yuv = self._reformat(frame, width, height, "yuvj420p", dst_colorspace=Colorspace.ITU601)
        planes = [
            self._edge_padded(slot, rotated_view(_plane_view(plane), rotation))
            for slot, plane in enumerate(yuv.planes)
        ]
        jpeg = simplejpeg.encode_jpeg_yuv_planes(planes[0], planes[1], planes[2], quality=quality)
        return jpeg, (int(planes[0].shape[0]), int(planes[0].shape[1]))

    def _output_size(self, frame, short_side: int, scale: int, upscale: bool) -> tuple[int, int]:
        if self._first_coded_size is None:
            self._first_coded_size = (frame.width, frame.height)
            quarter_turns = int(round(frame.rotation / 90.0)) % 4
            swap = quarter_turns % 2 == 1
            self.source_size = (frame.height, frame.width) if swap else (frame.width, frame.height)
        return output_size(*self._first_coded_size, short_side, scale, upscale)

    def _reformat(self, frame, width: int, height: int, fmt: str | None, dst_colorspace: int | None = None):
        """``frame.reformat`` through one cached reformatter per output (size, format): ``frame.reformat``
        builds a new swscale context per call, whose set-up cost more than the scaling itself (0.30 vs
        0.05 ms per 427x320 frame here). swscale runs on this thread: its default slice threads cost
        ~0.04 ms of hand-over per call and the task already has its one CPU busy."""
        from av.video.reformatter import VideoReformatter

        key = (frame.width, frame.height, frame.format.name, width, height, fmt, dst_colorspace)
        reformatter = self._reformatters.get(key)
        if reformatter is None:
            reformatter = self._reformatters[key] = VideoReformatter()
        return reformatter.reformat(
            frame,
            width=width,
            height=height,
            format=fmt,
            interpolation=self.interpolation,
            dst_colorspace=dst_colorspace,
            threads=1,
        )

    def _edge_padded(self, slot: int, plane: np.ndarray, pad: int = 16) -> np.ndarray:
        """``plane`` copied into a reused buffer padded by edge replication; returns the plane's view of it.

        libjpeg-turbo reads whole MCUs, so for odd sizes it reads past the last column/row of a plane:
        those bytes must be defined, or the same frame encodes to different JPEGs from run to run
        (measured: 2 distinct outputs in 20 encodes of one 85x64 frame; with this padding, 1). One buffer
        per plane and size is reused frame after frame (the encoder copies out what it needs): ``np.pad``
        allocating a fresh one cost 0.15 ms per 427x320 frame, as much as half the JPEG encoding.
        """
        height, width = plane.shape
        buffer = self._padded_planes.get((slot, height, width))
        if buffer is None:
            buffer = np.empty((height + pad, width + pad), np.uint8)
            self._padded_planes[(slot, height, width)] = buffer
        buffer[:height, :width] = plane
        buffer[:height, width:] = plane[:, width - 1 :]
        buffer[height:] = buffer[height - 1]
        return buffer[:height, :width]
