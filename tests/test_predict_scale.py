"""Predict at scale: parts written atomically, a re-run after a real kill skips the finished ones and gives
the rows of an uninterrupted run; the Ray Data engine on a two-node cluster gives the local engine's rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tdn.evaluation.model_source import ModelSource
from tdn.prediction.config import PredictConfig
from tdn.prediction.output import read_rows
from tdn.prediction.run import predict
from tests.job_process import JobProcess
from tests.predict_models import CLASSES, tiny_checkpoint
from tests.video_zoo import GOOD, make_zoo

CODECS = ("h264", "mpeg4", "vp9", "hevc", "mjpeg")


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """25 videos (5 codecs x 5 names) and one corrupt file."""
    root = tmp_path_factory.mktemp("predict_many")
    good, bad = make_zoo(root / "zoo")
    folder = root / "videos"
    folder.mkdir()
    for k in range(5):
        for case in CODECS:
            name = GOOD[case][0]
            shutil.copy(good[case], folder / f"{k}-{name}")
    shutil.copy(bad["garbage"], folder / "2-zz-corrupt.avi")
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", seed=1)


def _rows(path: Path) -> list[tuple]:
    fmt = path.suffix.lstrip(".")
    return [
        (r["video"], r["label_1"], round(float(r["prob_1"] or 0), 5), r["label_3"], r["error"])
        for r in read_rows(path.read_bytes(), fmt)  # type: ignore[arg-type]
    ]


def _cfg(many: Path, ckpt: str, out: Path, **fields) -> PredictConfig:
    return PredictConfig(
        sources=[str(many)], model=ModelSource(uri=ckpt), out=str(out), videos_per_part=3, **fields
    )


@pytest.mark.slow
def test_resume_after_a_kill_skips_finished_parts(many, checkpoint, tmp_path):
    out = tmp_path / "preds.csv"
    args = [
        str(many),
        "--model",
        checkpoint,
        "--out",
        str(out),
        "--videos_per_part",
        "3",
        "--engine",
        "local",
    ]
    job = JobProcess("predict", [*args, "--batch-size", "1", "--progress_interval_s", "0"])
    try:
        job.wait_for(r"\[predict\] \d+/26 videos, 2/9 parts", timeout=600)
    finally:
        job.kill()  # SIGKILL to its process group: nothing runs after this
    assert job.proc.returncode == -9
    parts = sorted(p.name for p in (tmp_path / "preds.csv.parts").iterdir() if p.name.startswith("part-"))
    assert len(parts) >= 2 and not out.exists()
    lines: list[str] = []
    resumed = predict(_cfg(many, checkpoint, out, engine="local"), log=lines.append)
    assert resumed.parts == 9 and resumed.parts_already_done >= 2 and resumed.failed == 1
    assert any(f"{resumed.parts_already_done} already done" in line for line in lines)
    fresh = tmp_path / "fresh.csv"
    predict(_cfg(many, checkpoint, fresh, engine="local"), log=lambda _: None)
    assert _rows(out) == _rows(fresh) and len(_rows(out)) == 26
    assert sum(1 for r in _rows(out) if r[4]) == 1


def test_ray_engine_gives_the_local_engines_rows_and_resumes(ray_cluster, many, checkpoint, tmp_path):
    local = tmp_path / "local.jsonl"
    predict(_cfg(many, checkpoint, local, engine="local"), log=lambda _: None)
    lines: list[str] = []
    on_ray = tmp_path / "ray.jsonl"
    cfg = _cfg(many, checkpoint, on_ray, engine="ray", replicas=2, batch_size=2, progress_interval_s=0.0)
    summary = predict(cfg, log=lines.append)
    assert summary.engine == "ray" and summary.failed == 1 and summary.parts_already_done == 0
    assert _rows(on_ray) == _rows(local)
    assert all(r[1] in CLASSES for r in _rows(on_ray) if not r[4])
    progress = [line for line in lines if "videos/s" in line]
    assert progress and "ETA" in progress[-1] and "9/9 parts" in progress[-1]
    again = predict(cfg, log=lambda _: None)  # every part is there: nothing to score
    assert again.parts_already_done == 9 and _rows(on_ray) == _rows(local)
