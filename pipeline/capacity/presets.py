"""What a capacity plan needs to know about a dataset: its size and its videos' shape.

Counts are the public releases' split sizes (a download always misses a few percent); durations, frame
rates and resolutions are typical values of the sources, not measurements of a particular copy: pass explicit
numbers (jobs/capacity.py --train-videos ... --width ...) for the copy you have.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetShape:
    """Size and video shape of one dataset, and the shard preset that stores it."""

    name: str  # short name printed with the plan
    train_videos: int  # videos in the training split
    val_videos: int  # videos in the validation (= test) split
    mean_duration_s: float  # mean video length, seconds
    fps: float  # mean frame rate
    width: int  # typical source width, pixels
    height: int  # typical source height, pixels
    codec: str  # source codec (h264, vp9, mpeg4)
    shard_preset: str  # jobs/configs/<shard_preset>.yaml: segments, views, short sides, videos per shard
    eval_crops: int  # crops per evaluation clip of the paper's protocol (the val split stores the clips)
    eval_input_size: int  # crop side of the paper's evaluation protocol (10x3: 256, 1x1: 224)
    note: str  # where the numbers come from


# Kinetics: YouTube H.264 at its source resolution; 720p is the conservative choice (the CVDF copies are the
# original uploads, mostly 360p-720p) and a point BENCHMARKS.md measured.
K400 = DatasetShape(
    "k400",
    240_436,
    19_796,
    10.0,
    30.0,
    1280,
    720,
    "h264",
    "shard_kinetics400",
    3,
    256,
    "Kinetics-400 (Kay et al. 2017): 240k train / 20k val clips of 10 s, 30 fps, 720p assumed",
)
K700 = DatasetShape(
    "k700",
    545_317,
    34_934,
    10.0,
    30.0,
    1280,
    720,
    "h264",
    "shard_kinetics400",
    3,
    256,
    "Kinetics-700-2020: 545k train / 35k val clips of 10 s, 30 fps, 720p assumed",
)
SSV2 = DatasetShape(
    "ssv2",
    168_913,
    24_777,
    3.8,
    12.0,
    427,
    240,
    "vp9",
    "shard_ssv2",
    1,
    224,
    "Something-Something V2: 169k train / 25k val VP9 webm, height 240, 12 fps, ~45 frames",
)
PRESETS: tuple[DatasetShape, ...] = (K400, K700, SSV2)
