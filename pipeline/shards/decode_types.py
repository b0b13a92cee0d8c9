"""What the two decoders (``VideoFile``, ``FrameFolder``) take and give, shared by both and by the writer.

    FrameRequest(index, scale)  --VideoFile / FrameFolder-->  (request, rgb or JPEG bytes), by index
    VideoInfo                   what ``probe()`` found: frame count (counted, not declared), fps
    DecodeResult                filled during a pass: frames decoded, clamped tail, packet errors, skips
    VideoError(stage, message)  an unusable source; ``stage`` goes to the quarantine report

Scale 2 is half size: the writer's non-centre window frames with ``context_scale: 2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Stage = Literal["missing", "open", "probe", "decode"]
Interpolation = Literal["AREA", "BILINEAR", "BICUBIC"]
JpegEncoder = Literal["pil", "simplejpeg"]


class VideoError(Exception):
    """A video that cannot be used; ``stage`` says where it failed (goes to the quarantine report)."""

    def __init__(self, stage: Stage, message: str) -> None:
        super().__init__(message)
        self.stage: Stage = stage


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int  # counted video packets (or JPEG files), not the container's declared count
    fps: float  # average frame rate, 0.0 when unknown


@dataclass(frozen=True)
class FrameRequest:
    """One frame to produce: source index and scale (1 = short side ``short_side``, 2 = half of that)."""

    index: int
    scale: int = 1


@dataclass
class DecodeResult:
    """Filled while ``frames()`` runs: how many source frames were decoded and whether any were clamped."""

    num_decoded: int = 0
    clamped: bool = False
    packet_errors: int = 0  # packets the decoder rejected and skipped
    not_decoded: int = 0  # unneeded non-reference frames the decoder was told to skip


def requests_by_index(wanted: Sequence[FrameRequest]) -> dict[int, list[int]]:
    """The wanted indices in increasing order, each with its sorted distinct scales."""
    by_index: dict[int, list[int]] = {}
    for req in wanted:
        if req.index < 0:
            raise ValueError(f"negative frame index {req.index}")
        scales = by_index.setdefault(req.index, [])
        if req.scale not in scales:
            scales.append(req.scale)
    return {i: sorted(s) for i, s in sorted(by_index.items())}
