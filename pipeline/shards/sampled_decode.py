"""One video's sampled frames, decoded once: the step the shard writer and ``predict`` share.

    path --open_source (decode.py)--> VideoFile | FrameFolder --probe()--> VideoInfo (frames counted)
      --sampler.sample(num_frames, rng)--> [SampledClip] (T windows x 5 frame indices per view)
      --frame_requests--> the unique (frame, scale) each clip stores (centres at scale 1, others context_scale)
      --one decode pass: source.jpegs(...) (shards) | source.frames(...) (predict, RGB)-->
    SampledFrames: clips (re-expressed on the decodable frames when the file held fewer frames than packets),
                   each clip's requests, one payload per request, the full-scale frame size

A request at or past the decodable end reuses the payload of the nearest request after it (all of them
hold the last decoded frame: the clamping the samplers already apply at a video's end).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from pipeline.shards.decode import open_source
from pipeline.shards.decode_types import DecodeResult, FrameRequest, VideoInfo
from pipeline.shards.frame_folder import FrameFolder
from pipeline.shards.sampling import SampledClip, Sampler
from pipeline.shards.video_file import VideoFile

CENTRE_POSITION = 2  # the window position the RGB branch uses; the others only feed frame differences

P = TypeVar("P")  # a decoded frame's payload: JPEG bytes (shards) or an RGB array (predict)
# (source, wanted requests, result) -> (request, payload, (height, width)) in increasing index order
Produce = Callable[
    [VideoFile | FrameFolder, list[FrameRequest], DecodeResult],
    Iterable[tuple[FrameRequest, P, tuple[int, int]]],
]


@dataclass(frozen=True)
class DecodeOptions:
    """How a source is opened (the shard job's ``EncodeSettings`` carry the same fields)."""

    decode_threads: int = 1
    min_decoded_fraction: float = 0.5
    skip_unneeded_frames: bool = True
    context_scale: int = 1  # 2 = non-centre window frames at half resolution


@dataclass
class SampledFrames(Generic[P]):
    info: VideoInfo  # as probed (packets counted)
    num_frames: int  # frames the clips are expressed on: probed, or decodable when clamped
    clips: list[SampledClip]
    per_clip: list[list[FrameRequest]]  # each clip's stored frames, sorted by index
    payloads: dict[FrameRequest, P]
    full_size: tuple[int, int]  # (height, width) of the full-scale frames
    result: DecodeResult

    def clip_payloads(self, k: int) -> list[P]:
        return [self.payloads[r] for r in self.per_clip[k]]

    def window_positions(self, k: int) -> list[list[int]]:
        """Clip k's windows as positions in its ``per_clip[k]`` list (T x window)."""
        where = {r.index: i for i, r in enumerate(self.per_clip[k])}
        return [[where[i] for i in window] for window in self.clips[k].frame_indices]


def frame_requests(clips: Sequence[SampledClip], context_scale: int) -> list[list[FrameRequest]]:
    """Per clip: its stored frames (sorted unique) with their scale. A frame is full scale when it is the
    centre of any of the clip's windows, else ``context_scale``."""
    out = []
    for clip in clips:
        centres = {window[CENTRE_POSITION] for window in clip.frame_indices}
        out.append([FrameRequest(i, 1 if i in centres else context_scale) for i in clip.unique_frames()])
    return out


def clamp_clip(clip: SampledClip, num_frames: int) -> SampledClip:
    last = num_frames - 1
    return SampledClip(tuple(tuple(min(i, last) for i in w) for w in clip.frame_indices), clip.view)


def decode_sampled(
    path: str, sampler: Sampler, rng: np.random.Generator, options: DecodeOptions, produce: Produce[P]
) -> SampledFrames[P]:
    """Probe, sample, decode the sampled frames once (``produce``); raises VideoError for a bad video.

    Each distinct (frame, scale) is produced once even when several views share it."""
    with open_source(
        path, options.decode_threads, options.min_decoded_fraction, options.skip_unneeded_frames
    ) as source:
        info = source.probe()
        clips = sampler.sample(info.num_frames, rng)
        per_clip = frame_requests(clips, options.context_scale)
        wanted = sorted({r for reqs in per_clip for r in reqs}, key=lambda r: (r.index, r.scale))
        payloads: dict[FrameRequest, P] = {}
        full_size: tuple[int, int] | None = None
        result = DecodeResult()
        for request, payload, size in produce(source, wanted, result):
            if request.scale == 1 and full_size is None:
                full_size = size
            payloads[request] = payload
    assert full_size is not None  # every clip has centre frames, always requested at scale 1
    num_frames = info.num_frames
    if result.clamped:
        # The file held fewer frames than packets: re-express the clips on the decodable frames; a clamped
        # index reuses the payload of any request at or past it (they all hold the last decoded frame).
        num_frames = result.num_decoded
        clips = [clamp_clip(c, num_frames) for c in clips]
        per_clip = frame_requests(clips, options.context_scale)
        for request in {r for reqs in per_clip for r in reqs}:
            if request not in payloads:
                payloads[request] = next(
                    data
                    for r, data in sorted(payloads.items(), key=lambda kv: kv[0].index)
                    if r.index >= request.index and r.scale == request.scale
                )
    return SampledFrames(info, num_frames, clips, per_clip, payloads, full_size, result)
