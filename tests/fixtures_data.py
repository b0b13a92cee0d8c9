"""Generated datasets for tests (synthetic motion videos in official layouts).

Registered through ``pytest_plugins`` in tests/conftest.py. Session-scoped: generated once per test run
(about 1-2 s of encoding), then shared read-only -- tests must not modify the returned folders.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.synthetic.generate import SyntheticConfig, generate

# 4 classes x 8 videos, tiny frames, 24-60 frames (so some are shorter than 40); h264 .mp4 in UCF101 layout.
SYNTHETIC_UCF101 = SyntheticConfig(
    classes=4,
    videos_per_class=8,
    seed=2021,
    codec="h264",
    layout="ucf101",
    min_frames=24,
    max_frames=60,
    sizes=((64, 48), (80, 60), (96, 72)),
    fps=(15, 24, 25, 30),
)


@pytest.fixture(scope="session")
def synthetic_ucf101(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a small UCF101-layout dataset: ``<Class>/v_<Class>_gNN_cMM.mp4``, ``ucfTrainTestlist/`` and
    ``synthetic_manifest.json`` (see pipeline/synthetic/generate.py)."""
    root = tmp_path_factory.mktemp("synthetic_ucf101")
    generate(SYNTHETIC_UCF101, root)
    return root
