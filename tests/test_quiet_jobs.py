"""Quiet jobs (issue 25): shard, evaluate and predict run as a user runs them, ``python -m jobs.<job>`` with
stdout and stderr to a pipe (not a terminal, as when a log goes to a file), on tiny data and the tests' two-node
Ray cluster: ``assert_quiet`` (tests/job_process.py) holds each to no known-harmless Ray line, no colour code,
no traceback, and a summary at the end. The train job is held to the same on the uninterrupted run of
tests/test_fault_matrix.py (``python -m jobs.train`` on the same cluster, its output to a pipe, tracked on a
real MLflow server): a training of its own here would add a Ray Train launch to the suite and test nothing
more. Evaluation and prediction use a freshly initialised checkpoint: their output, not the model's accuracy,
is the point."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.loading.shard_reading import read_index
from tests.eval_shards import save_tiny_checkpoint
from tests.job_process import JobProcess, assert_quiet

pytestmark = pytest.mark.integration


def test_shard_evaluate_predict_print_no_noise_and_end_with_a_summary(
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

    classes = read_index(str(shards / "test")).classes
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt", len(classes), classes, "tsn", num_segments=4)
    evaluate = JobProcess(
        "evaluate",
        [
            *("--model", checkpoint, "--shards", str(shards / "test"), "--out", str(tmp_path / "eval")),
            *("--eval.input_size", "32", "--eval.short_side", "64"),
            *("--tracking-uri", "none", "--address", address),
        ],
    )
    assert_quiet(evaluate, "evaluate")

    videos = sorted(synthetic_ucf101.rglob("*.mp4"))[:3]
    predict = JobProcess("predict", [*map(str, videos), "--model", checkpoint])
    assert_quiet(predict, "predict")
