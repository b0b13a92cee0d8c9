"""The capacity plan (pipeline/capacity, jobs/capacity.py): its arithmetic on hand-checkable unit costs, the
unit-costs file's contract, and the command. No Ray, no benchmark run: milliseconds."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from jobs import capacity as capacity_job
from pipeline.capacity.plan import ClusterShape, StorageLayout, make_plan
from pipeline.capacity.presets import K400, PRESETS, DatasetShape
from pipeline.capacity.unit_costs import (
    DEFAULT_PATH,
    SCHEMA,
    GpuThroughput,
    LoaderCost,
    PipelineOverhead,
    ShardCost,
    Source,
    UnitCosts,
    load_unit_costs,
    save_unit_costs,
    update_unit_costs,
)
from pipeline.errors import InputError

SRC = Source(command="test", date="2026-11-29", machine="none", note="hand-made", measured=True)
GUESS = replace(SRC, measured=False, note="a guess for the test")
COSTS = UnitCosts(
    schema=SCHEMA,
    shard=(
        ShardCost(
            100,
            100,
            "h264",
            100,
            90,
            cpu_s_per_decoded_frame=0.01,
            cpu_s_per_stored_jpeg=0.1,
            bytes_per_stored_jpeg=1000.0,
            source=SRC,
        ),
    ),
    overhead=PipelineOverhead(shard_cpu_s_per_video=1.0, index_bytes_per_video=0.0, source=SRC),
    loader=(LoaderCost("cpu", 224, 10.0, SRC), LoaderCost("device", 224, 100.0, SRC)),
    gpu=(GpuThroughput("X1", "toy", train_clips_per_s=100.0, eval_views_per_s=300.0, source=GUESS),),
)
# 1000 + 100 videos of 10 s at 10 fps: 100 frames decoded, 1 view x 2 segments x 5 = 10 JPEGs stored
DATA = DatasetShape("toy", 1000, 100, 10.0, 10.0, 100, 100, "h264", "shard_kinetics400", 1, 224, "test")
LAYOUT = StorageLayout(
    num_segments=2,
    train_views=1,
    train_short_side=100,
    val_views=1,
    val_short_side=100,
    videos_per_shard=10,
    context_scale=1,
)
CLUSTER = ClusterShape(
    cpu_nodes=1, cores_per_node=10, gpus=2, gpu_type="X1", loader_workers_per_gpu=1, shuffle_buffer=4
)


def test_plan_arithmetic_by_hand():
    plan = make_plan(COSTS, DATA, LAYOUT, CLUSTER)
    # per video: 100 frames x 0.01 + 10 JPEGs x 0.1 + 1 overhead = 3 CPU-s; 1100 videos
    assert plan.shard_cpu_hours.value == pytest.approx(1100 * 3 / 3600)
    assert plan.shard_wall_hours.value == pytest.approx(1100 * 3 / 10 / 3600)
    assert plan.shard_bytes.value == pytest.approx(1100 * 10 * 1000 / 1e12)
    assert plan.shards.value == 100 + 10 and plan.s3_objects.value == 2 * 110 + 4
    assert plan.train_shard_mb.value == pytest.approx(10 * 10 * 1000 / 1e6)
    # epoch: 1000 clips on 2 GPUs x 100 clips/s = 5 s; GETs: 100 shards + 2 x 2 readers
    assert plan.epoch_gpu_hours.value == pytest.approx(10 / 3600)
    assert plan.epoch_wall_s.value == pytest.approx(5)
    assert plan.train_gets_per_s.value == pytest.approx(104 / 5)
    assert plan.train_mb_per_s.value == pytest.approx(1000 * 10 * 1000 / 5 / 1e6)
    assert plan.s3_streams_per_gpu.value == pytest.approx(plan.train_mb_per_s.value / 2 / 85)
    assert plan.cores_per_gpu_cpu.value == pytest.approx(10) and plan.cores_per_gpu_device.value == 1
    assert plan.eval_gpu_hours.value == pytest.approx(100 / 300 / 3600)
    # every figure cites what it came from; an assumption is named as such
    assert "[shard]" in plan.shard_cpu_hours.basis and "[gpu]" in plan.epoch_wall_s.basis
    assert "ASSUMPTION" in {c.key: c for c in plan.sources}["gpu"].source.label()


def test_plan_scales_linearly():
    base = make_plan(COSTS, DATA, LAYOUT, CLUSTER)
    twice = make_plan(COSTS, replace(DATA, train_videos=2000, val_videos=200), LAYOUT, CLUSTER)
    assert twice.shard_cpu_hours.value == pytest.approx(2 * base.shard_cpu_hours.value)
    assert twice.shard_bytes.value == pytest.approx(2 * base.shard_bytes.value)
    assert twice.epoch_gpu_hours.value == pytest.approx(2 * base.epoch_gpu_hours.value)
    more_gpus = make_plan(COSTS, DATA, LAYOUT, replace(CLUSTER, gpus=4))
    assert more_gpus.epoch_wall_s.value == pytest.approx(base.epoch_wall_s.value / 2)
    assert more_gpus.eval_wall_s.value == pytest.approx(base.eval_wall_s.value / 2)
    assert more_gpus.s3_streams_per_gpu.value == pytest.approx(base.s3_streams_per_gpu.value)
    assert more_gpus.epoch_gpu_hours.value == pytest.approx(base.epoch_gpu_hours.value)
    # a stored JPEG at half the short side has a quarter of the pixels: bytes and encode time scale with area
    half = make_plan(COSTS, DATA, replace(LAYOUT, train_short_side=50, val_short_side=50), CLUSTER)
    assert half.shard_bytes.value == pytest.approx(base.shard_bytes.value / 4)


def test_unit_costs_round_trip_and_merge(tmp_path):
    path = tmp_path / "unit_costs.json"
    save_unit_costs(COSTS, path)
    assert load_unit_costs(path) == COSTS
    newer = replace(COSTS.loader[0], clips_per_core_s=20.0)
    other = replace(COSTS.shard[0], source_width=200)
    update_unit_costs(path, loader=newer, shard=other)
    got = load_unit_costs(path)
    assert got.loader == (newer, COSTS.loader[1])  # replaced its own entry, kept the device one
    assert got.shard == (COSTS.shard[0], other)  # a new resolution is added beside the old one


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["gpu"][0].update(tflops=1), "unknown field 'tflops'"),
        (lambda d: d["overhead"].pop("source"), "missing field 'source'"),
        (lambda d: d["shard"][0].update(cpu_s_per_stored_jpeg="x"), "'cpu_s_per_stored_jpeg' must be float"),
        (lambda d: d["loader"][1].update(decode="gpu"), "decode must be 'cpu' or 'device'"),
        (lambda d: d["gpu"][0]["source"].update(measured="yes"), "field 'measured' must be bool"),
    ],
)
def test_bad_unit_costs_file_is_one_line_exit_2(edit, message, tmp_path, capsys):
    data = json.loads(COSTS.to_json())
    edit(data)
    path = tmp_path / "unit_costs.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=message):
        load_unit_costs(path)
    assert capacity_job.main(["--unit-costs", str(path), "--gpu-type", "X1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("capacity: error: ") and message in err and "\n" not in err


def test_the_checked_in_unit_costs_parse_and_plan_every_preset():
    costs = load_unit_costs(DEFAULT_PATH)
    assert {g.gpu_type for g in costs.gpu} >= {"H100", "H200"}
    assert {c.decode for c in costs.loader} == {"cpu", "device"}
    for source in [s.source for s in costs.shard] + [costs.overhead.source] + [g.source for g in costs.gpu]:
        assert source.command and source.date and source.machine
    layout = StorageLayout(8, 2, 320, 10, 256, 64, 1)
    for preset in PRESETS:
        plan = make_plan(costs, preset, layout, replace(CLUSTER, gpu_type="H100"))
        assert all(f.value > 0 for f in plan.figures())


def test_command_prints_the_plan(capsys):
    assert capacity_job.main(["--dataset", "k400", "--gpus", "64"]) == 0
    out = capsys.readouterr().out
    assert f"{K400.train_videos:,} train" in out and "64 x H100" in out
    for label in (
        "CPU-hours to shard",
        "shard bytes on S3",
        "S3 GET requests/s",
        "GPU-hours per epoch",
        "CPU cores per GPU, decode: cpu",
        "CPU cores per GPU, decode: device",
    ):
        assert label in out
    assert "[gpu] H100" in out and "ASSUMPTION" in out  # the GPU rate is not measured yet: said so
    assert capacity_job.main(["--gpu-type", "TPU"]) == 2
    assert "no GPU entry 'TPU'" in capsys.readouterr().err
