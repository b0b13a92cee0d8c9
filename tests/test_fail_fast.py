"""Training fails fast, once, on a bad input (issue 14, item 7), and still retries lost workers.

A bad index, a missing or truncated shard, a weights file of the wrong shape or a refused pickle, a
``run.val_every_epochs`` of 0 and more workers than the cluster holds are found on the driver before any worker
starts (tdn/training/preflight.py): no Ray Train run at all. A shard whose bytes changed without changing its
size can only be seen by the worker reading it: the run then ends on its first worker group
(tdn/training/failures.py counts them) instead of ``run.max_failures + 1`` of them. Each message names the file.
The retry of a killed worker is tests/test_fault_matrix.py::test_queued_calls_survive_an_outage_and_a_killed_rank0.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from pipeline.shards.contract import ContractError, CorruptShardError, ShardIndex
from tdn.checkpoints.project import CheckpointError, save_checkpoint
from tdn.model.networks import ModelConfig, build_model_from_config
from tdn.training.config import TrainConfig
from tdn.training.failures import WorkerInputError, one_line
from tests.train_runs import RECIPE, fit, tiny

pytestmark = pytest.mark.integration

# the cheapest run that starts workers: TSN at 32 px, one epoch, no validation; 2 restarts allowed
CHEAP = (
    "model.variant=tsn",
    "loader.input_size=32",
    "loader.batch_size=8",
    "optim.epochs=1",
    "data.val_split=",
    "run.max_failures=2",
)


def cheap(shards: Path, tmp_path: Path, *overrides: str) -> TrainConfig:
    return tiny(shards, tmp_path, *CHEAP, *overrides)


@pytest.fixture
def own_shards(synthetic_shards: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic train split, to break."""
    shutil.copytree(synthetic_shards / "train", tmp_path / "shards" / "train")
    return tmp_path / "shards"


def first_shard(shards: Path) -> Path:
    index = ShardIndex.from_json((shards / "train" / "index.json").read_text(), "index.json")
    return shards / "train" / index.shards[0].name


def test_one_line_takes_the_original_message_of_a_dataloader_worker_error():
    wrapped = CorruptShardError(
        "Caught CorruptShardError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    raise CorruptShardError(...)\n'
        "pipeline.shards.contract.CorruptShardError: /d/shard-000000.tar: 10 bytes with sha256 ab..."
    )
    assert one_line(wrapped) == "/d/shard-000000.tar: 10 bytes with sha256 ab..."
    assert one_line(ValueError("a\n  b")) == "a b"


def test_bad_index_missing_and_truncated_shards_fail_on_the_driver(ray_cluster, own_shards, tmp_path):
    index_file = own_shards / "train" / "index.json"
    good_index = index_file.read_text()
    data = json.loads(good_index)
    data["num_videos"] += 1  # an edit the checksum no longer covers
    index_file.write_text(json.dumps(data))
    t0 = time.monotonic()
    with pytest.raises(ContractError, match="index.json"):
        fit(cheap(own_shards, tmp_path))
    index_file.write_text(good_index)

    shard = first_shard(own_shards)
    content = shard.read_bytes()
    shard.write_bytes(content[: len(content) - 4096])  # cut at a tar block boundary
    with pytest.raises(CorruptShardError, match=f"{shard.name}.*truncated"):
        fit(cheap(own_shards, tmp_path))
    shard.unlink()
    with pytest.raises(CorruptShardError, match=f"{shard.name}.*missing"):
        fit(cheap(own_shards, tmp_path))
    # no worker group was started: far below one (about 6 s to start 2 workers here)
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "ray").exists() or not any((tmp_path / "ray").iterdir())


def test_bad_weights_files_fail_on_the_driver(ray_cluster, synthetic_shards, tmp_path):
    other = ModelConfig(arch="resnet18", width=0.5, num_classes=4, num_segments=4, variant="tsn")
    wrong_shape = tmp_path / "wide.pt"
    save_checkpoint(str(wrong_shape), build_model_from_config(other), other)
    with pytest.raises(CheckpointError, match=f"{wrong_shape}.*does not match the model"):
        fit(cheap(synthetic_shards, tmp_path, f"init.checkpoint={wrong_shape}"))

    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "tdn-checkpoint/1", "evil": Path("/")}, pickled)  # not loadable with weights_only
    with pytest.raises(CheckpointError, match=f"{pickled}.*weights_only"):
        fit(cheap(synthetic_shards, tmp_path, f"run.resume={pickled}"))


def test_cli_rejects_val_every_0_and_more_workers_than_the_cluster_holds(
    ray_cluster, synthetic_shards, tmp_path, capsys
):
    from jobs.train import main

    base = [
        "--config",
        str(RECIPE),
        "--data.shards",
        str(synthetic_shards),
        "--run.storage_path",
        str(tmp_path / "ray"),
        "--tracking.enabled",
        "false",
    ]
    assert main([*base, "--run.val_every_epochs", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "run.val_every_epochs must be >= 1" in err and len(err.splitlines()) == 1

    t0 = time.monotonic()
    assert main([*base, "--workers", "8", "--run.resources_timeout_s", "2"]) == 2  # 4 CPUs on 2 nodes here
    err = capsys.readouterr().err.strip()
    assert time.monotonic() - t0 < 60
    assert "run.workers=8" in err and "hold only 4" in err and len(err.splitlines()) == 1

    # a GPU request on a cluster without GPUs: at once, one line saying so (not a wait, then "lower --workers")
    t0 = time.monotonic()
    assert main([*base, "--workers", "2", "--gpus", "--run.resources_timeout_s", "60"]) == 2
    err = capsys.readouterr().err.strip()
    assert time.monotonic() - t0 < 30, time.monotonic() - t0
    assert "the Ray cluster has no GPU; train on CPUs without --gpus" in err and len(err.splitlines()) == 1, (
        err
    )


def test_a_corrupt_shard_seen_by_a_worker_ends_the_run_on_its_first_attempt(
    ray_cluster, own_shards, tmp_path
):
    shard = first_shard(own_shards)
    content = bytearray(shard.read_bytes())
    middle = len(content) // 2
    content[middle : middle + 64] = bytes(b ^ 0xFF for b in content[middle : middle + 64])  # same size
    shard.write_bytes(bytes(content))
    cfg = cheap(own_shards, tmp_path, "loader.num_workers=1")  # the error comes through a DataLoader worker
    assert cfg.run.max_failures == 2
    with pytest.raises(WorkerInputError) as caught:
        fit(cfg)
    assert caught.value.attempt == 1, f"the run was retried: ended on worker group {caught.value.attempt}"
    message = str(caught.value)
    assert shard.name in message and "\n" not in message and "not retried" in message
