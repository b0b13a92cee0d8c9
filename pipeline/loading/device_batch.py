"""The device-side input path (``loader.decode: device``): loader workers ship JPEG bytes, the device decodes.

Loader workers (CPU, forked) only read tar members, choose the view, split the ``.frames`` blob into JPEGs and
draw each sample's crop box and flip; the training process turns the whole batch into pixels on its device::

    worker:  B samples --encode_batch--> EncodedBatch: one uint8 blob (all JPEG bytes of the batch, ~0.5 MB
             per 8x5 clip), JPEG sizes, frame positions, (row, box, flip) per output row
    device:  EncodedBatch --JpegDecoder.decode (one batched call: nvJPEG on CUDA)--> U_total (3, h, w) uint8
             --per sample and row: crop (whole decoded pixels) + antialiased bilinear resize, or the exact
               sub-pixel resampler for boxes between pixels; flip--> (U, 3, S, S) float
             --gather window positions, round to whole grey levels, ImageNet-normalise-->
             float32 (R, T, 5, 3, S, S), the batch the CPU path (jpeg_decode.py + batch_decode.finish) produces

The CPU path decodes with PIL's ``draft`` (libjpeg's 1/2, 1/4, 1/8 DCT scaling) where the crop allows it; the
device path decodes at full resolution and resizes with the same antialiased bilinear filter. Without draft,
the two paths agree within one grey level on every pixel (tests/test_device_batch.py); with draft, the CPU
path's DCT downscale differs from the filter by a few grey levels on textured frames (the test states it).

``NvjpegDecoder`` imports torchvision lazily: torchvision wheels are CUDA builds that cannot be imported next
to a CPU torch, and CUDA cannot be initialised in forked loader workers, so decoding happens here, in the
training process. ``PilJpegDecoder`` is the CPU stand-in (tests, CPU runs).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.loading.jpeg_decode import FrameDecodeError
from pipeline.loading.transforms import IMAGENET_MEAN, IMAGENET_STD, CropBox

Row = tuple[int, CropBox, bool]  # (batch row, box in full-resolution frame coordinates, horizontal flip)


@dataclass(frozen=True)
class EncodedSample:
    """One sample's JPEGs (by size, in blob order) and where its frames go in the batch."""

    jpeg_sizes: tuple[int, ...]  # U stored frames
    width: int  # full-resolution frame size (metadata); half-resolution frames decode smaller
    height: int
    positions: tuple[int, ...]  # T*5 indices into the U stored frames, window by window
    rows: tuple[Row, ...]  # one per output row of this sample (1 in training, 1 or 3 crops in evaluation)
    where: str  # shard URI + key, for error messages


@dataclass(frozen=True)
class EncodedBatch:
    """A batch before decoding: what a loader worker hands to the training process (a few hundred kB/clip)."""

    blob: torch.Tensor  # uint8 (total bytes,): every sample's JPEGs, concatenated in sample order
    samples: tuple[EncodedSample, ...]
    num_rows: int
    segments: int  # T
    window: int  # frames per window (5)
    out_size: int  # S

    def jpegs(self) -> list[torch.Tensor]:
        """The batch's JPEGs as 1-D uint8 views of the blob (no copy), sample by sample."""
        sizes = [s for sample in self.samples for s in sample.jpeg_sizes]
        return list(torch.split(self.blob, sizes))


def encode_batch(
    items: Sequence[tuple[bytes, Sequence[int], int, int, Sequence[Sequence[int]], Sequence[Row], str]],
    num_rows: int,
    out_size: int,
) -> EncodedBatch:
    """Worker side: (frames blob, jpeg_sizes, width, height, T x 5 window positions, rows, where) per sample
    -> one ``EncodedBatch``. Checks that each blob splits into its JPEG sizes and that T x 5 agree."""
    if not items:
        raise ValueError("no samples to encode")
    segments, window = len(items[0][4]), len(items[0][4][0])
    samples, blobs = [], []
    for frames, sizes, width, height, windows, rows, where in items:
        if sum(sizes) != len(frames):
            raise FrameDecodeError(
                f"{where}: frames member holds {len(frames)} bytes, jpeg_sizes add up to {sum(sizes)}"
            )
        if len(windows) != segments or any(len(w) != window for w in windows):
            raise FrameDecodeError(
                f"{where}: {len(windows)} segments x {len(windows[0])} frames, the batch has "
                f"{segments} x {window} (mixed shard settings?)"
            )
        positions = tuple(int(p) for w in windows for p in w)
        if any(not 0 <= p < len(sizes) for p in positions):
            raise FrameDecodeError(
                f"{where}: window positions out of range of the {len(sizes)} stored frames"
            )
        samples.append(
            EncodedSample(
                tuple(int(s) for s in sizes), int(width), int(height), positions, tuple(rows), where
            )
        )
        blobs.append(frames)
    blob = torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8)
    return EncodedBatch(blob, tuple(samples), num_rows, segments, window, out_size)


# ------------------------------------------------------------------------------------------ decoders


class JpegDecoder(Protocol):
    """Decodes encoded JPEGs (1-D uint8 CPU tensors) to RGB (3, h, w) uint8 tensors on ``device``."""

    device: torch.device

    def decode(self, jpegs: Sequence[torch.Tensor]) -> list[torch.Tensor]: ...


class PilJpegDecoder:
    """CPU stand-in for nvJPEG: PIL (libjpeg-turbo) at full resolution, one image at a time."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)

    def decode(self, jpegs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, data in enumerate(jpegs):
            try:
                opened = Image.open(io.BytesIO(data.numpy().tobytes()))
                if opened.format != "JPEG":
                    raise ValueError(f"stored frame is {opened.format}, not JPEG")
                rgb = opened.convert("RGB") if opened.mode != "RGB" else opened
                pixels = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)
            except (OSError, ValueError, SyntaxError) as exc:
                raise FrameDecodeError(
                    f"cannot decode stored JPEG {i} ({data.numel()} bytes): {exc}"
                ) from exc
            out.append(pixels.to(self.device))
        return out


class NvjpegDecoder:
    """The whole list in one batched nvJPEG call (``torchvision.io.decode_jpeg(list, device=...)``); the
    encoded bytes stay on the CPU, the pixels land on the GPU."""

    def __init__(self, device: str | torch.device = "cuda") -> None:
        from torchvision.io import ImageReadMode, decode_jpeg  # CUDA builds only: imported on this path alone

        self.device = torch.device(device)
        self._decode, self._mode = decode_jpeg, ImageReadMode.RGB

    def decode(self, jpegs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return list(self._decode(list(jpegs), mode=self._mode, device=self.device))


def make_decoder(device: str | torch.device) -> JpegDecoder:
    """nvJPEG on a CUDA device, the PIL stand-in elsewhere."""
    device = torch.device(device)
    return NvjpegDecoder(device) if device.type == "cuda" else PilJpegDecoder(device)


# ------------------------------------------------------------------------------------ crop and resize


def resample_weights(
    start: float, end: float, in_size: int, out_size: int, device: torch.device
) -> torch.Tensor:
    """(out_size, in_size) weights of PIL's antialiased bilinear resize of the span [start, end) (sub-pixel
    boxes allowed): triangle filter widened by the downscale factor, rows normalised to sum 1."""
    scale = (end - start) / out_size
    support = max(scale, 1.0)
    centres = start + (torch.arange(out_size, device=device, dtype=torch.float64) + 0.5) * scale
    pixels = torch.arange(in_size, device=device, dtype=torch.float64) + 0.5
    w = (1.0 - (pixels[None, :] - centres[:, None]).abs() / support).clamp_(min=0.0)
    return (w / w.sum(dim=1, keepdim=True).clamp_(min=1e-12)).float()


def crop_resize(
    frames: torch.Tensor, box: tuple[float, float, float, float], out_size: int, flip: bool
) -> torch.Tensor:
    """uint8 (U, 3, h, w) frames of one decoded size, box in their pixels -> float (U, 3, S, S), 0..255 scale.

    Whole-pixel boxes: crop, then F.interpolate(bilinear, antialias) as the CPU path does (no resize when the
    crop is already S x S). Boxes between pixels: separable PIL-equivalent resampling (two matmuls)."""
    whole = tuple(round(v) for v in box)
    if all(abs(a - b) < 1e-6 for a, b in zip(box, whole)):
        left, top, right, bottom = whole
        out = frames[:, :, top:bottom, left:right].float()
        if out.shape[-2:] != (out_size, out_size):
            out = F.interpolate(
                out, size=(out_size, out_size), mode="bilinear", antialias=True, align_corners=False
            )
    else:
        h, w = frames.shape[-2:]
        wy = resample_weights(box[1], box[3], h, out_size, frames.device)
        wx = resample_weights(box[0], box[2], w, out_size, frames.device)
        out = torch.matmul(torch.matmul(wy, frames.float()), wx.t())
    return out.flip(-1) if flip else out


def normalise_float_(x: torch.Tensor) -> torch.Tensor:
    """float (..., 3, H, W) on the 0..255 scale -> ImageNet-normalised, in place, in the same per-channel
    steps as ``transforms.normalise_uint8`` (so equal grey levels give bit-identical values)."""
    for c in range(3):
        x.select(-3, c).sub_(255.0 * IMAGENET_MEAN[c]).mul_(1.0 / (255.0 * IMAGENET_STD[c]))
    return x


def decode_batch(batch: EncodedBatch, decoder: JpegDecoder) -> torch.Tensor:
    """Device side: ``EncodedBatch`` -> float32 (R, T, 5, 3, S, S), ImageNet-normalised on the decoder's device."""
    try:
        images = decoder.decode(batch.jpegs())
    except ValueError as exc:  # a stored JPEG that does not decode: name the samples it may be in
        where = ", ".join(sorted({sample.where for sample in batch.samples}))
        raise FrameDecodeError(f"{exc} (one of {where})") from exc
    s = batch.out_size
    out = torch.empty(
        (batch.num_rows, batch.segments * batch.window, 3, s, s), dtype=torch.float32, device=decoder.device
    )
    first = 0
    for sample in batch.samples:
        frames = images[first : first + len(sample.jpeg_sizes)]
        first += len(sample.jpeg_sizes)
        # Frames of one sample decode to one or two sizes (full resolution, half-resolution neighbours).
        groups: dict[tuple[int, int], list[int]] = {}
        for i, frame in enumerate(frames):
            if frame.dim() != 3 or frame.shape[0] != 3:
                raise FrameDecodeError(
                    f"{sample.where}: decoded frame {i} is {tuple(frame.shape)}, not (3, h, w)"
                )
            groups.setdefault((int(frame.shape[1]), int(frame.shape[2])), []).append(i)
        stacks = {size: torch.stack([frames[i] for i in idx]) for size, idx in groups.items()}
        positions = torch.as_tensor(sample.positions, dtype=torch.int64, device=decoder.device)
        for row, box, flip in sample.rows:
            resized = torch.empty((len(frames), 3, s, s), dtype=torch.float32, device=decoder.device)
            for (h, w), idx in groups.items():
                rx, ry = w / sample.width, h / sample.height
                if abs(w * sample.height - h * sample.width) > max(sample.width, sample.height) * 2:
                    raise FrameDecodeError(
                        f"{sample.where}: stored frame is {w}x{h}, metadata says "
                        f"{sample.width}x{sample.height}"
                    )
                scaled = (box.left * rx, box.top * ry, box.right * rx, box.bottom * ry)
                part = crop_resize(stacks[(h, w)], scaled, s, flip)
                if len(idx) == len(frames):
                    resized = part
                else:
                    resized[torch.as_tensor(idx, device=decoder.device)] = part
            torch.index_select(resized, 0, positions, out=out[row])
    # Whole grey levels, as the CPU path's uint8 buffer holds them, then the same normalisation.
    out.round_().clamp_(0.0, 255.0)
    return normalise_float_(out).view(batch.num_rows, batch.segments, batch.window, 3, s, s)
