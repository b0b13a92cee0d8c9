"""Quiet jobs (issue 25): shard, train, evaluate and predict run as a user runs them, ``python -m jobs.<job>``
with stdout and stderr to a pipe (not a terminal, as when a log goes to a file), on tiny data and the
tests' two-node Ray cluster. Their output must hold no line of a known-harmless Ray pattern
(pipeline/ray_noise.py, what ``--verbose`` brings back), no colour code, no traceback, and end with the
job's summary (``<job>: done: ...``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline import ray_noise
from pipeline.loading.shard_reading import read_index
from tests.job_process import JobProcess

pytestmark = pytest.mark.integration

COLOUR = re.compile(r"\x1b\[")


def assert_quiet(job: JobProcess, name: str) -> None:
    assert job.finish() == 0, job.output[-5000:]
    noise = [line for line in job.lines if ray_noise.match(line) is not None]
    assert not noise, f"{name}: known-harmless lines on the console:\n" + "\n".join(noise[:10])
    coloured = [line for line in job.lines if COLOUR.search(line)]
    assert not coloured, f"{name}: colour codes off a terminal:\n" + "\n".join(coloured[:10])
    assert "Traceback" not in job.output, job.output[-5000:]
    assert any(line.startswith(f"{name}: done: ") for line in job.lines), f"{name}: no summary:\n{job.output}"


def test_shard_train_evaluate_predict_print_no_noise_and_end_with_a_summary(
    ray_cluster, synthetic_ucf101: Path, tmp_path: Path
) -> None:
    address = ray_cluster.address
    shards = tmp_path / "shards"
    shard = JobProcess(
        "shard",
        [
            *("--config", "shard_ucf101", "--dataset.root", str(synthetic_ucf101)),
            *("--dataset.annotations", str(synthetic_ucf101 / "ucfTrainTestlist"), "--output", str(shards)),
            *("--train.short_side", "64", "--test.short_side", "64", "--num-segments", "4"),
            *("--address", address),
        ],
    )
    assert_quiet(shard, "shard")

    classes = len(read_index(str(shards / "train")).classes)
    train = JobProcess(
        "train",
        [
            *("--config", "synthetic_tiny", "--data.shards", str(shards), "--name", "quiet"),
            *("--run.storage_path", str(tmp_path / "runs"), "--address", address, "--tracking-uri", "none"),
            *("--model.num_classes", str(classes), "--model.variant", "tsn", "--optim.epochs", "1"),
            *("--loader.input_size", "32", "--loader.eval_short_side", "64", "--loader.batch_size", "8"),
        ],
    )
    assert_quiet(train, "train")

    checkpoint = tmp_path / "runs" / "quiet" / "epoch_0001" / "checkpoint.pt"
    assert checkpoint.is_file(), train.output[-3000:]
    evaluate = JobProcess(
        "evaluate",
        [
            *("--model", str(checkpoint), "--shards", str(shards / "test"), "--out", str(tmp_path / "eval")),
            *("--tracking-uri", "none", "--address", address),
        ],
    )
    assert_quiet(evaluate, "evaluate")

    videos = sorted(synthetic_ucf101.rglob("*.mp4"))[:3]
    predict = JobProcess("predict", [*map(str, videos), "--model", str(checkpoint)])
    assert_quiet(predict, "predict")
