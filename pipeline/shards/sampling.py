"""Frame samplers for TDN: which 0-based frame indices feed each of the T segments.

Every sampler maps a video length ``num_frames`` to a list of ``SampledClip``; each clip holds T windows of
``WINDOW`` (5) consecutive frame indices, the layout the model consumes as (N, T, 5, 3, H, W):

    clip.frame_indices = ((p0, p0+1, p0+2, p0+3, p0+4),      # segment 0
                          (p1, p1+1, ...),                     # segment 1
                          ...)                                 # T rows, each clamped to num_frames - 1

The start positions follow the released TDN code (ops/dataset.py of MCG-NJU/TDN), converted from its 1-based
frame numbers to 0-based indices:

- train: ``avg = (N - 4) // T``; start_i = i * avg + randint(avg). When avg == 0 but N > T, T sorted random
  starts in [0, N - 4); otherwise every start is 0 (short videos repeat their frames).
- val/test: when N > T + 4, ``tick = (N - 4) / T`` and start_i = int(tick / 2 + i * tick); otherwise 0.
- Kinetics-style test: N independent train-style samplings ("10 clips").

The samplers are pure: all randomness comes from the ``numpy.random.Generator`` passed in, which callers seed
with ``rng_for(seed, video_id, salt)`` so that a re-run (in any process, on any machine) repeats the samples.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

WINDOW = 5  # frames per segment: 1 RGB frame plus 4 differences (S-TDM)


@dataclass(frozen=True)
class SampledClip:
    """One pre-sampled view: T windows of ``WINDOW`` consecutive 0-based frame indices, clamped at the end."""

    frame_indices: tuple[tuple[int, ...], ...]
    view: int

    def unique_frames(self) -> list[int]:
        """Sorted distinct frame indices the clip needs (what a decoder must produce)."""
        return sorted({i for window in self.frame_indices for i in window})


class Sampler(Protocol):
    def sample(self, num_frames: int, rng: np.random.Generator) -> list[SampledClip]: ...


def rng_for(seed: int, video_id: str, salt: str = "") -> np.random.Generator:
    """A generator seeded from (seed, video_id, salt) through sha256, stable across processes and Python
    versions (the builtin ``hash`` of a str is randomised per process)."""
    digest = hashlib.sha256(f"{int(seed)}\x00{video_id}\x00{salt}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def _check(num_frames: int, num_segments: int) -> None:
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    if num_frames < 1:
        raise ValueError(f"cannot sample from a video with {num_frames} frames")


def windows_from_starts(starts: list[int], num_frames: int) -> tuple[tuple[int, ...], ...]:
    """Expand 0-based window starts into clamped windows: start..start+4, each capped at num_frames - 1."""
    last = num_frames - 1
    return tuple(tuple(min(int(s) + k, last) for k in range(WINDOW)) for s in starts)


def train_starts(num_frames: int, num_segments: int, rng: np.random.Generator) -> list[int]:
    """Random 0-based window starts, one per segment (TSN-style segment-random sampling)."""
    _check(num_frames, num_segments)
    # Windows must fit: only N - 4 start positions keep a whole window inside the video.
    positions = num_frames - WINDOW + 1
    avg = positions // num_segments
    if avg > 0:
        return [i * avg + int(r) for i, r in enumerate(rng.integers(0, avg, size=num_segments))]
    if num_frames > num_segments and positions > 0:
        return sorted(int(r) for r in rng.integers(0, positions, size=num_segments))
    return [0] * num_segments


def centre_starts(num_frames: int, num_segments: int) -> list[int]:
    """Deterministic 0-based window starts at segment centres (val/test)."""
    _check(num_frames, num_segments)
    if num_frames > num_segments + WINDOW - 1:
        tick = (num_frames - WINDOW + 1) / float(num_segments)
        return [int(tick / 2.0 + tick * i) for i in range(num_segments)]
    return [0] * num_segments


@dataclass(frozen=True)
class TrainSampler:
    """K independent random samplings per video (pre-sampled views, so that epochs see different frames)."""

    num_segments: int = 8
    num_views: int = 1

    def sample(self, num_frames: int, rng: np.random.Generator) -> list[SampledClip]:
        if self.num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {self.num_views}")
        return [
            SampledClip(windows_from_starts(train_starts(num_frames, self.num_segments, rng), num_frames), v)
            for v in range(self.num_views)
        ]


@dataclass(frozen=True)
class CentreSampler:
    """One view at the segment centres (the released code's val/test sampling); ignores the rng."""

    num_segments: int = 8

    def sample(self, num_frames: int, rng: np.random.Generator) -> list[SampledClip]:
        return [SampledClip(windows_from_starts(centre_starts(num_frames, self.num_segments), num_frames), 0)]


@dataclass(frozen=True)
class MultiClipSampler:
    """Kinetics-style test: ``num_clips`` independent train-style samplings (views 0..num_clips-1)."""

    num_segments: int = 8
    num_clips: int = 10

    def sample(self, num_frames: int, rng: np.random.Generator) -> list[SampledClip]:
        if self.num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {self.num_clips}")
        return TrainSampler(self.num_segments, self.num_clips).sample(num_frames, rng)
