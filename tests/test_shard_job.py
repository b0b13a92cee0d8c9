"""The shard job on a real two-node Ray cluster: local and S3 output, bad videos, resume after a kill."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import storage
from pipeline.config import load_config
from pipeline.datasets import DatasetConfig, load_dataset
from pipeline.shards.contract import (
    DryRunReport,
    QuarantineEntry,
    SampleMeta,
    ShardIndex,
    ShardJobSummary,
    decode_sample_metadata,
    index_checksum,
    sample_key,
    split_jpegs,
)
from pipeline.shards.job import ShardConfig, SplitShardConfig, plan_shards, run_shard_job
from tests.video_zoo import BAD_STAGES, GOOD, make_zoo, read_index

REPO = Path(__file__).resolve().parent.parent

# Names the keys and paths must survive (the generic CSV dataset lists them).
ODD_NAMES = ["-leading dash.mp4", "dots.in.the.name.v2.mp4", "space & amp #hash.mp4", "ünïcödé 日本.mp4"]


def write_csv_dataset(root: Path) -> tuple[DatasetConfig, dict[str, str], dict[str, str]]:
    """The zoo (good, bad, odd names) as a generic CSV dataset. Returns (config, good path -> zoo case,
    bad path -> expected stage)."""
    good, bad = make_zoo(root / "videos")
    for name in ODD_NAMES:
        shutil.copy(good["h264"], root / "videos" / name)
    good_paths = {str(p): case for case, p in good.items()} | {
        str(root / "videos" / n): "h264" for n in ODD_NAMES
    }
    bad_paths = {str(p): BAD_STAGES[case] for case, p in bad.items()}
    rows = [(p, i % 3) for i, p in enumerate(sorted(good_paths) + sorted(bad_paths))]
    (root / "train.csv").write_text("path,label\n" + "".join(f'"{p}",{label}\n' for p, label in rows))
    return (
        DatasetConfig(format="csv", root=str(root / "videos"), annotations=str(root / "train.csv")),
        good_paths,
        bad_paths,
    )


def read_split(
    split_dir: str,
) -> tuple[ShardIndex, list[QuarantineEntry], dict[str, list[tuple[SampleMeta, list[bytes]]]]]:
    """(index, quarantine lines, video_id -> [(meta, jpegs)]) of a written split, checking shard hashes."""
    index_uri, quarantine_uri = (
        storage.join(split_dir, "index.json"),
        storage.join(split_dir, "quarantine.jsonl"),
    )
    index = ShardIndex.from_json(storage.read_text(index_uri), index_uri)
    assert index.checksum == index_checksum(index.to_dict())  # also verified by from_json
    lines = storage.read_text(quarantine_uri).splitlines()
    quarantine = [
        QuarantineEntry.from_json(line, f"{quarantine_uri} line {i + 1}") for i, line in enumerate(lines)
    ]
    videos: dict[str, list] = defaultdict(list)
    for shard in index.shards:
        data = storage.read_bytes(storage.join(split_dir, shard.name))
        assert hashlib.sha256(data).hexdigest() == shard.sha256 and len(data) == shard.bytes
        members: dict[str, dict[str, bytes]] = defaultdict(dict)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar.getmembers():
                key, ext = m.name.split(".", 1)
                members[key][ext] = tar.extractfile(m).read()
        assert len(members) == shard.samples
        for key, sample in members.items():
            meta = decode_sample_metadata(sample)
            assert key == sample_key(meta.video_id, meta.view) and "." not in key
            assert sample["cls"] == str(meta.label).encode()
            videos[meta.video_id].append((meta, split_jpegs(sample["frames"], meta.jpeg_sizes)))
    return index, quarantine, videos


def _rgb(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


@pytest.mark.integration
def test_zoo_to_local_shards(ray_cluster, tmp_path, capsys):
    dataset, good_paths, bad_paths = write_csv_dataset(tmp_path / "zoo")
    records = load_dataset(dataset).splits["train"]
    cfg = ShardConfig(
        dataset=dataset,
        output=str(tmp_path / "shards"),
        splits=["train"],
        num_segments=3,
        train=SplitShardConfig("train", 2, 32),
        videos_per_shard=4,
        progress_interval_s=0.0,
        max_failed_fraction=0.5,
    )
    summary = run_shard_job(cfg)
    assert "videos/s" in capsys.readouterr().out  # progress lines
    index, quarantine, videos = read_split(str(tmp_path / "shards" / "train"))

    by_path = {r.path: r for r in records}
    # Every good video yields its 2 views, holding the frames its metadata names.
    assert set(videos) == {by_path[p].video_id for p in good_paths if p in by_path}
    for path, case in good_paths.items():
        record = by_path[path]
        views = sorted(videos[record.video_id], key=lambda v: v[0].view)
        assert [m.view for m, _ in views] == [0, 1]
        axis = 1 if GOOD[case][1].rotation else 0
        for meta, jpegs in views:
            assert (
                meta.label == record.label and meta.source == path and meta.num_frames == GOOD[case][1].frames
            )
            assert [read_index(_rgb(j), axis=axis) for j in jpegs] == meta.stored_frames
    # Every bad one is a quarantine line with its stage and a reason.
    got = {q.path: q for q in quarantine}
    for path, stage in bad_paths.items():
        assert got[path].stage == stage and got[path].error, got.get(path)
    (missing,) = load_dataset(dataset).missing["train"]
    assert got[missing.path].video_id == missing.video_id  # the dataset's id, as for every other line
    assert index.quarantined == len(quarantine) == len(bad_paths)
    assert index.num_videos == len(good_paths) and index.num_samples == 2 * len(good_paths)
    assert index.views_per_video == 2 and index.resize.short_side == 32 and index.resize.upscale
    split = summary.splits["train"]
    assert split.quarantined == len(bad_paths) and split.checksum == index.checksum
    assert summary.ok  # the bad fifth of the zoo failed, below the configured 0.5
    strict = run_shard_job(dataclasses.replace(cfg, max_failed_fraction=0.1))
    assert not strict.ok and strict.splits["train"].checksum == index.checksum  # all shards skipped
    assert strict.splits["train"].shards_already_done == len(plan_shards(cfg, "train", records))
    assert split.shards_already_done == split.shards_rewritten == 0
    assert strict.splits["train"].shards_rewritten == 0


@pytest.mark.integration
def test_synthetic_to_s3(ray_cluster, s3_server, synthetic_ucf101, tmp_path):
    bucket = s3_server.create_bucket("shard-test")
    dataset = DatasetConfig(
        format="ucf101",
        root=str(synthetic_ucf101),
        annotations=str(synthetic_ucf101 / "ucfTrainTestlist"),
        split_number=1,
    )
    # Videos read from S3 too: upload the dataset tree.
    for path in synthetic_ucf101.rglob("*"):
        if path.is_file():
            storage.write_bytes_atomic(
                f"{bucket}/ucf/{path.relative_to(synthetic_ucf101).as_posix()}", path.read_bytes()
            )
    s3_dataset = DatasetConfig(
        format="ucf101", root=f"{bucket}/ucf", annotations=f"{bucket}/ucf/ucfTrainTestlist", split_number=1
    )
    cfg = ShardConfig(
        dataset=s3_dataset,
        output=f"{bucket}/shards",
        splits=["train", "test"],
        num_segments=4,
        train=SplitShardConfig("train", 2, 48),
        test=SplitShardConfig("centre", 1, 40),
        videos_per_shard=5,
        max_videos_per_split=8,
    )
    summary = run_shard_job(cfg)
    assert summary.ok
    local = load_dataset(dataset)
    for split, views, short in (("train", 2, 48), ("test", 1, 40)):
        index, quarantine, videos = read_split(f"{bucket}/shards/{split}")
        assert quarantine == [] and index.num_videos == 8 and index.num_samples == 8 * views
        assert summary.splits[split].checksum == index.checksum
        assert index.classes == local.classes
        for samples in videos.values():
            assert len(samples) == views
            for meta, jpegs in samples:
                assert meta.source.startswith(f"{bucket}/ucf/") and min(meta.height, meta.width) == short
                assert len(jpegs) == len(meta.stored_frames) and all(j[:2] == b"\xff\xd8" for j in jpegs)
    assert storage.list_files(f"{bucket}/shards/train", ".tar") == [
        f"{bucket}/shards/train/shard-000000.tar",
        f"{bucket}/shards/train/shard-000001.tar",
    ]


def _job_flags(dataset: Path, out: Path) -> dict[str, str]:
    return {
        "dataset.format": "ucf101",
        "dataset.root": str(dataset),
        "dataset.annotations": str(dataset / "ucfTrainTestlist"),
        "dataset.split_number": "1",
        "output": str(out),
        "splits": "train,test",
        "num_segments": "4",
        "train.short_side": "40",
        "test.short_side": "32",
        "videos_per_shard": "1",
        "max_videos_per_split": "10",
    }


def _shard_job_cmd(address: str, dataset: Path, out: Path) -> list[str]:
    flags = [arg for key, value in _job_flags(dataset, out).items() for arg in (f"--{key}", value)]
    return [sys.executable, "-m", "jobs.shard", "--address", address, "--json", *flags]


def _index(split_dir: Path) -> ShardIndex:
    return ShardIndex.from_json((split_dir / "index.json").read_text(), str(split_dir / "index.json"))


def _shard_hashes(out: Path) -> dict[str, str]:
    return {f"{split}/{s.name}": s.sha256 for split in ("train", "test") for s in _index(out / split).shards}


@pytest.mark.integration
def test_killed_job_resumes_to_identical_result(ray_cluster, synthetic_ucf101, tmp_path):
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(REPO))
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    # Uninterrupted reference run, in process, same flags.
    overrides = [f"{k}={v}" for k, v in _job_flags(synthetic_ucf101, clean).items()]
    assert run_shard_job(load_config(ShardConfig, None, overrides)).ok
    total = len(list(clean.glob("*/shard-*.tar")))
    assert total > 8
    # Same job, killed as soon as its first shards are complete.
    proc = subprocess.Popen(
        _shard_job_cmd(ray_cluster.address, synthetic_ucf101, resumed),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not list(resumed.glob("*/shard-*.tar.json")):
            assert proc.poll() is None and time.monotonic() < deadline, "the job ended before writing a shard"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = len(list(resumed.glob("*/shard-*.tar.json")))
    assert 0 < done < total and not (resumed / "train" / "index.json").exists()
    rerun = subprocess.run(
        _shard_job_cmd(ray_cluster.address, synthetic_ucf101, resumed),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "already done" in rerun.stdout
    summary = ShardJobSummary.from_json(rerun.stdout.strip().splitlines()[-1], "jobs/shard.py --json")
    assert summary.splits["train"].checksum == _index(clean / "train").checksum
    assert _shard_hashes(resumed) == _shard_hashes(clean)
    for split in ("train", "test"):
        assert (resumed / split / "index.json").read_bytes() == (clean / split / "index.json").read_bytes()
    assert not [p for p in resumed.rglob("*") if p.name.endswith(".tmp")]


def test_dry_run_counts_and_writes_nothing(synthetic_ucf101, tmp_path, capsys):
    from jobs.shard import main

    # One listed video that is not on disk.
    lists = tmp_path / "ucfTrainTestlist"
    shutil.copytree(synthetic_ucf101 / "ucfTrainTestlist", lists)
    first_class = (lists / "classInd.txt").read_text().split()[1]
    with (lists / "trainlist01.txt").open("ab") as f:
        f.write(f"{first_class}/v_{first_class}_g99_c09.mp4 1\r\n".encode())
    out = tmp_path / "never"
    rc = main(
        [
            "--dry-run",
            "--json",
            "--dataset.format",
            "ucf101",
            "--dataset.root",
            str(synthetic_ucf101),
            "--dataset.annotations",
            str(lists),
            "--output",
            str(out),
        ]
    )
    assert rc == 0 and not out.exists()
    report = DryRunReport.from_json(
        capsys.readouterr().out.strip().splitlines()[-1], "jobs/shard.py --dry-run"
    )
    index = load_dataset(DatasetConfig(format="ucf101", root=str(synthetic_ucf101), annotations=str(lists)))
    assert report.num_classes == len(index.classes) == 4
    assert report.splits["train"].missing == 1 and report.splits["test"].missing == 0
    for split, counts in report.splits.items():
        assert counts.found == len(index.splits[split]) > 0
        assert counts.listed == counts.found + counts.missing


def test_bad_config_is_rejected_by_name(capsys):
    from jobs.shard import main

    assert main(["--test.sampler", "centre", "--test.views", "3", "--dry-run"]) == 2
    assert "multiclip" in capsys.readouterr().err
    assert main(["--train.viewz", "3"]) == 2
