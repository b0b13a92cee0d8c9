"""One decode and sampling path (issue 24 item 3): a raw video -> the model's views through the shard job's
decoding and sampling and the loader's crops. Frame i of the zoo's videos shows i in grey bands, so every
row of a view says which source frame it came from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.loading.raw_views import ViewSettings, read_views
from pipeline.shards.decode_types import VideoError
from pipeline.shards.sampling import CentreSampler, MultiClipSampler, rng_for
from tests.video_zoo import make_zoo, read_index


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return make_zoo(tmp_path_factory.mktemp("raw_views"))


@pytest.mark.parametrize("case", ["h264", "mpeg4", "vp9", "hevc", "mjpeg", "vfr", "odd_444"])
def test_centre_clip_rows_are_the_sampled_source_frames(zoo, case):
    good, _ = zoo
    views = read_views(str(good[case]), "v", ViewSettings(4, 1, 1, 32, 40))
    assert views.x.shape == (1, 4, 5, 32, 32, 3) and views.x.dtype == torch.uint8
    expected = CentreSampler(4).sample(views.num_frames, np.random.default_rng(0))[0].frame_indices
    assert views.frame_indices == [[list(w) for w in expected]]
    read = [[read_index(views.x[0, t, k].numpy()) for k in range(5)] for t in range(4)]
    assert read == views.frame_indices[0]


def test_multi_clip_protocol_repeats_the_shard_jobs_sampling(zoo):
    good, _ = zoo
    views = read_views(str(good["h264"]), "my video", ViewSettings(4, 10, 3, 48, 48, seed=5))
    assert views.x.shape == (30, 4, 5, 48, 48, 3)
    clips = MultiClipSampler(4, 10).sample(24, rng_for(5, "my video", "test"))
    assert views.frame_indices == [[list(w) for w in c.frame_indices] for c in clips]
    # the three crops of one clip hold the same frames (their boxes differ along the longer side)
    for k in range(3):
        assert read_index(views.x[3 * 7 + k, 1, 2].numpy()) == clips[7].frame_indices[1][2]
    assert [round(b.left) for b in views.boxes] == [0, 16, 8] and views.source_size == (64, 48)


def test_rotated_video_maps_its_crop_box_to_displayed_pixels(zoo):
    good, _ = zoo
    views = read_views(str(good["rotated"]), "r", ViewSettings(4, 1, 1, 32, 40))
    assert views.source_size == (48, 64)  # displayed upright: the coded 64 x 48 turned by 90 degrees
    box = views.boxes[0]
    assert box.width == pytest.approx(32 * 48 / 40) and box.bottom <= 64 + 1e-6


def test_bad_videos_raise_with_their_quarantine_stage(zoo):
    _, bad = zoo
    stages = {}
    for case in ("garbage", "zero_bytes", "missing", "audio_only"):
        with pytest.raises(VideoError) as info:
            read_views(str(bad[case]), case, ViewSettings(4, 1, 1, 32, 40))
        stages[case] = info.value.stage
    assert stages == {"garbage": "open", "zero_bytes": "open", "missing": "missing", "audio_only": "probe"}
