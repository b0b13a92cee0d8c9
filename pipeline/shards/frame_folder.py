"""A folder of JPEG frames (Something-Something V1) read like a video: frame i = the i-th file by name.

    folder/00001.jpg, 00002.jpg, ...  --probe()---------> VideoInfo(num_frames = JPEG files, fps 0.0)
                                      --frames(wanted)--> (request, (H, W, 3) uint8), wanted files only
                                      --jpegs(wanted)---> (request, JPEG bytes re-encoded by PIL, (H, W))

Sizes follow ``frame_convert.output_size`` of the first frame read, as for ``VideoFile``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from io import BytesIO

import numpy as np

from pipeline import storage
from pipeline.shards.decode_types import (
    DecodeResult,
    FrameRequest,
    JpegEncoder,
    VideoError,
    VideoInfo,
    requests_by_index,
)
from pipeline.shards.frame_convert import encode_jpeg, output_size

JPEG_SUFFIXES = (".jpg", ".jpeg")


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

    @property
    def source_size(self) -> tuple[int, int] | None:
        """(width, height) of the first frame read, else None (as ``VideoFile.source_size``)."""
        return self._first_size

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

    def frames(
        self,
        wanted: Sequence[FrameRequest],
        short_side: int,
        result: DecodeResult | None = None,
        upscale: bool = True,
    ) -> Iterator[tuple[FrameRequest, np.ndarray]]:
        from PIL import Image

        result = result if result is not None else DecodeResult()
        for index, scales in requests_by_index(wanted).items():
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

    def jpegs(
        self,
        wanted: Sequence[FrameRequest],
        short_side: int,
        quality: int,
        encoder: JpegEncoder = "simplejpeg",
        result: DecodeResult | None = None,
        upscale: bool = True,
    ) -> Iterator[tuple[FrameRequest, bytes, tuple[int, int]]]:
        """(request, JPEG bytes, (height, width)); stored frames are re-encoded with PIL whatever
        ``encoder`` says (their pixels are RGB already, and frame folders are small)."""
        for request, rgb in self.frames(wanted, short_side, result, upscale):
            yield request, encode_jpeg(rgb, quality), (int(rgb.shape[0]), int(rgb.shape[1]))
