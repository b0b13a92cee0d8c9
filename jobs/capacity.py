"""Capacity plan for a dataset on a cluster, from the measured unit costs in benchmarks/unit_costs.json.

    python -m jobs.capacity --dataset k400 --gpus 8 [--cpu-nodes 4 --cores-per-node 32] [--gpu-type H100]
    python -m jobs.capacity --dataset ssv2 --train-videos 100000 --shard-config shard_ssv2 --gpus 64

Prints CPU-hours and wall time to shard, shard bytes, shards and S3 objects, S3 GET/s and MB/s during
training, GPU-hours and wall time per epoch, CPU cores per GPU for each decode path, shuffle-buffer memory and
evaluation time. Each figure names the unit cost it came from (command, date; ASSUMPTION where nothing was
measured).
Arithmetic: pipeline/capacity/plan.py; the unit costs are written by the benchmarks (--write-unit-costs).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from jobs.cli import Job, Shortcut, resolve_config, run
from pipeline.capacity.plan import ClusterShape, StorageLayout, make_plan
from pipeline.capacity.presets import PRESETS
from pipeline.capacity.unit_costs import DEFAULT_PATH, load_unit_costs
from pipeline.config import load_config
from pipeline.loading.config import LoaderConfig
from pipeline.shards.job import ShardConfig


@dataclass
class CapacityJob:
    dataset: Literal["k400", "k700", "ssv2"] = (
        "k400"  # size and video shape preset (pipeline/capacity/presets.py)
    )
    train_videos: int = 0  # training videos; 0 = the preset's
    val_videos: int = 0  # validation videos; 0 = the preset's
    mean_duration_s: float = 0.0  # mean video length in seconds; 0 = the preset's
    fps: float = 0.0  # mean frame rate; 0 = the preset's
    width: int = 0  # source width; 0 = the preset's
    height: int = 0  # source height; 0 = the preset's
    shard_config: str = (
        ""  # shard preset or YAML (segments, views, short sides, videos per shard); "" = dataset's
    )
    cpu_nodes: int = 4  # CPU nodes for the shard job
    cores_per_node: int = 32  # cores per CPU node
    gpus: int = 8  # GPUs for training and evaluation
    gpu_type: str = "H100"  # a GPU type of the unit costs
    loader_workers_per_gpu: int = 6  # loader.num_workers of the GPU recipes (jobs/configs/k400_r50_8f.yaml)
    shuffle_buffer: int = LoaderConfig.shuffle_buffer  # loader.shuffle_buffer, samples per loader worker
    unit_costs: str = ""  # unit-costs JSON; "" = benchmarks/unit_costs.json


JOB = Job(
    "capacity",
    CapacityJob,
    __doc__,
    shortcuts=tuple(
        Shortcut("--" + key.replace("_", "-"), key)
        for key in (
            "train_videos",
            "val_videos",
            "mean_duration_s",
            "cpu_nodes",
            "cores_per_node",
            "gpu_type",
            "loader_workers_per_gpu",
            "shuffle_buffer",
            "shard_config",
            "unit_costs",
        )
    ),
)


def main(argv: Sequence[str] | None = None) -> int:
    return run(JOB, argv, capacity)


def capacity(job: CapacityJob, args: argparse.Namespace) -> int:
    costs_path = Path(job.unit_costs) if job.unit_costs else DEFAULT_PATH
    costs = load_unit_costs(costs_path)
    preset = next(p for p in PRESETS if p.name == job.dataset)
    data = replace(
        preset,
        train_videos=job.train_videos or preset.train_videos,
        val_videos=job.val_videos or preset.val_videos,
        mean_duration_s=job.mean_duration_s or preset.mean_duration_s,
        fps=job.fps or preset.fps,
        width=job.width or preset.width,
        height=job.height or preset.height,
    )
    shard_path = resolve_config(job.shard_config or preset.shard_preset, ShardConfig)
    layout = StorageLayout.from_shard_config(load_config(ShardConfig, shard_path))
    cluster = ClusterShape(
        job.cpu_nodes,
        job.cores_per_node,
        job.gpus,
        job.gpu_type,
        job.loader_workers_per_gpu,
        job.shuffle_buffer,
    )
    plan = make_plan(costs, data, layout, cluster)
    print(
        f"# {data.name}: {data.train_videos:,} train + {data.val_videos:,} val videos, "
        f"{data.mean_duration_s:g} s at {data.fps:g} fps, {data.width}x{data.height} {data.codec} "
        f"({data.note})"
    )
    print(
        f"# storage: {shard_path.name}; cluster: {job.cpu_nodes} CPU nodes x {job.cores_per_node} cores, "
        f"{job.gpus} x {job.gpu_type}, {job.loader_workers_per_gpu} loader workers per GPU"
    )
    print(f"# unit costs: {costs_path}")
    for f in plan.figures():
        value = f"{f.value:,.0f}" if f.value >= 100 else f"{f.value:.3g}"
        print(f"{f.label:<52s} {value:>10s} {f.unit:<7s} <- {f.basis}")
    print("unit costs cited:")
    for c in plan.sources:
        print(f"  [{c.key}] {c.what}: {c.source.label()}")
        if c.source.measured:
            print(f"      on {c.source.machine}; {c.source.note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
