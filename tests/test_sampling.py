"""Unit tests of the pure frame samplers (pipeline/shards/sampling.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pipeline.shards.sampling import (
    WINDOW,
    CentreSampler,
    MultiClipSampler,
    SampledClip,
    TrainSampler,
    centre_starts,
    rng_for,
    train_starts,
    windows_from_starts,
)


def official_window(start0: int, num_frames: int) -> tuple[int, ...]:
    """The released loader's frame walk, written the way it reads (1-based p, advance while p < N), then
    converted to 0-based: an independent formulation of the clamping."""
    p = start0 + 1
    out = []
    for _ in range(WINDOW):
        out.append(p - 1)
        if p < num_frames:
            p += 1
    return tuple(out)


def check_clip(clip: SampledClip, num_frames: int, num_segments: int) -> None:
    assert len(clip.frame_indices) == num_segments
    for window in clip.frame_indices:
        assert len(window) == WINDOW
        assert all(0 <= i < num_frames for i in window)
        assert window == official_window(window[0], num_frames)
    starts = [w[0] for w in clip.frame_indices]
    assert starts == sorted(starts)


@pytest.mark.parametrize("num_frames", [1, 2, 4, 5, 6, 8, 9, 11, 12, 13, 20, 39, 40, 41, 300, 10**7])
@pytest.mark.parametrize("num_segments", [1, 3, 8, 16])
def test_all_samplers_give_valid_clamped_windows(num_frames: int, num_segments: int) -> None:
    rng = np.random.default_rng(0)
    for clips in (
        TrainSampler(num_segments, 3).sample(num_frames, rng),
        CentreSampler(num_segments).sample(num_frames, rng),
        MultiClipSampler(num_segments, 4).sample(num_frames, rng),
    ):
        assert [c.view for c in clips] == list(range(len(clips)))
        for clip in clips:
            check_clip(clip, num_frames, num_segments)


def test_short_videos_repeat_frames() -> None:
    rng = np.random.default_rng(1)
    assert TrainSampler(8).sample(1, rng)[0].frame_indices == ((0,) * 5,) * 8
    assert CentreSampler(8).sample(3, rng)[0].frame_indices == ((0, 1, 2, 2, 2),) * 8
    # N = 5 is exactly one window: every segment sees it (N <= T in the released code -> all zeros).
    assert TrainSampler(8).sample(5, rng)[0].frame_indices == ((0, 1, 2, 3, 4),) * 8
    assert CentreSampler(8).sample(12, rng)[0].frame_indices == ((0, 1, 2, 3, 4),) * 8


def test_train_starts_follow_segment_ranges() -> None:
    rng = np.random.default_rng(2)
    n, t = 100, 8
    avg = (n - 4) // t  # 12
    seen = {i: set() for i in range(t)}
    for _ in range(400):
        for i, s in enumerate(train_starts(n, t, rng)):
            assert i * avg <= s < (i + 1) * avg
            seen[i].add(s - i * avg)
    # randint(avg) covers every offset of the segment, the last frames past T*avg+4 are never windows' starts.
    assert all(v == set(range(avg)) for v in seen.values())


def test_train_when_fewer_positions_than_segments_sorted_random() -> None:
    # N = 10, T = 8: (N-4)//T == 0 and N > T -> T sorted random starts in [0, N-4).
    rng = np.random.default_rng(3)
    draws = [train_starts(10, 8, rng) for _ in range(200)]
    assert all(d == sorted(d) and all(0 <= s < 6 for s in d) for d in draws)
    assert len({tuple(d) for d in draws}) > 1
    assert {s for d in draws for s in d} == set(range(6))


def test_train_n_between_window_and_segments_is_zero() -> None:
    # N = 7 <= T = 8: the released code puts every start at the first frame.
    assert train_starts(7, 8, np.random.default_rng(0)) == [0] * 8


def test_centre_starts_match_formula() -> None:
    assert centre_starts(13, 8) == [int(9 / 8 / 2 + 9 / 8 * i) for i in range(8)]
    assert centre_starts(100, 8) == [6, 18, 30, 42, 54, 66, 78, 90]
    assert centre_starts(104, 4) == [12, 37, 62, 87]
    # huge videos: windows stay in range and spread over the whole video
    starts = centre_starts(10**7, 8)
    assert starts[0] > 0 and starts[-1] + 4 < 10**7 and starts[-1] > 0.9 * 10**7


def test_windows_clamp_to_last_frame() -> None:
    assert windows_from_starts([0, 3, 6], 7) == ((0, 1, 2, 3, 4), (3, 4, 5, 6, 6), (6, 6, 6, 6, 6))


def test_views_are_independent_and_deterministic() -> None:
    s = TrainSampler(8, 4)
    a = s.sample(200, rng_for(7, "v_Foo_g01_c01"))
    b = s.sample(200, rng_for(7, "v_Foo_g01_c01"))
    assert a == b
    assert len({c.frame_indices for c in a}) == 4
    assert s.sample(200, rng_for(8, "v_Foo_g01_c01")) != a
    assert s.sample(200, rng_for(7, "v_Foo_g01_c02")) != a
    assert s.sample(200, rng_for(7, "v_Foo_g01_c01", "epoch1")) != a
    clips = MultiClipSampler(8, 10).sample(500, rng_for(0, "x"))
    assert [c.view for c in clips] == list(range(10)) and len({c.frame_indices for c in clips}) == 10


def test_rng_for_is_stable_across_processes() -> None:
    code = (
        "from pipeline.shards.sampling import rng_for; "
        "print(rng_for(3, '-leading dash #1 ü', 'train').integers(0, 2**62, size=4).tolist())"
    )
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    assert len(outs) == 1
    assert outs.pop().strip() == str(
        rng_for(3, "-leading dash #1 ü", "train").integers(0, 2**62, size=4).tolist()
    )


def test_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="0 frames"):
        TrainSampler(8).sample(0, rng)
    with pytest.raises(ValueError, match="num_segments"):
        CentreSampler(0).sample(10, rng)
    with pytest.raises(ValueError, match="num_views"):
        TrainSampler(8, 0).sample(10, rng)


def test_unique_frames() -> None:
    clip = CentreSampler(2).sample(20, np.random.default_rng(0))[0]
    assert clip.unique_frames() == sorted(set(clip.frame_indices[0]) | set(clip.frame_indices[1]))
