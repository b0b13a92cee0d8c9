"""One measurement of benchmarks/scale.py, run in a process of its own so that its peak memory is its own.

    python -m benchmarks.scale_jobs shard    ROOT ANNOTATIONS OUT VIDEOS_PER_SHARD
    python -m benchmarks.scale_jobs loader   SPLIT_DIR
    python -m benchmarks.scale_jobs eval     VIDEOS CLASSES OUT_DIR
    python -m benchmarks.scale_jobs tracking VIDEOS TRACKING_URI
    python -m benchmarks.scale_jobs predict  VIDEOS_DIR OUT_DIR CLASSES

Each prints one JSON object (its figures) as the last line of stdout.

- shard: the real shard job (Kinetics annotations) on a two-node Ray cluster started by this process, so every
  Ray process is a descendant of this one and its CPU time can be summed; driver figures are its own.
- loader: pipeline.loading.train_loader over the split (2 loader workers): index read, first batch of epoch 0
  and of epoch 1 (persistent workers: the per-epoch overhead), the epoch plan of 8 ranks, each worker's RSS.
- eval: the driver side of a 10 clips x 3 crops evaluation over N videos and C classes with random softmax
  scores in batches of 8 videos (as score_shards adds them): ScoreAccumulator per replica (2) ->
  merge_partials -> summary -> write_outputs. Peak Python/NumPy memory (tracemalloc) and CPU time per video.
- predict: ``tdn.prediction.run.predict`` (engine ray, 2 replicas, parts of 64 videos, CSV) with a tiny TDN,
  on a cluster started as for shard: wall, driver and cluster CPU, the driver's peak RSS, output bytes, parts.
- tracking: one training epoch's MLflow calls through tdn.tracking.tracker.Tracker as the training loop makes
  them (train/* every log_every_steps steps, epoch and val metrics once), against a real ``mlflow server``;
  HTTP requests and bytes counted by wrapping requests.Session.send in this process only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.process_usage import RssSampler, cpu_s, descendants_cpu_s, rss_peak_mib

GLOBAL_BATCH = 64  # 8 GPUs x 8 clips: the paper's Kinetics setting, for the steps of one epoch (tracking)


def shard(root: str, annotations: str, out: str, videos_per_shard: int) -> dict[str, Any]:
    import socket

    import ray
    from ray.cluster_utils import Cluster

    from pipeline.datasets import DatasetConfig
    from pipeline.shards.contract import ShardIndex
    from pipeline.shards.job import ShardConfig, SplitShardConfig, run_shard_job

    with socket.socket() as sock:  # the dashboard (for the task count) on a free port, not 8265
        sock.bind(("127.0.0.1", 0))
        dashboard_port = sock.getsockname()[1]
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "include_dashboard": True, "dashboard_port": dashboard_port},
    )
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        cfg = ShardConfig(
            dataset=DatasetConfig(format="kinetics", root=root, annotations=annotations),
            output=out,
            splits=["train"],
            train=SplitShardConfig("train", 2, 0),
            videos_per_shard=videos_per_shard,
            progress_interval_s=1e9,
        )
        rss_before, cpu0, cluster_cpu0 = rss_peak_mib(), cpu_s(), descendants_cpu_s()
        sampler = RssSampler()
        start = time.perf_counter()
        summary = run_shard_job(cfg)
        wall = time.perf_counter() - start
        job_rss = sampler.stop()
        cpu, cluster_cpu = cpu_s() - cpu0, descendants_cpu_s() - cluster_cpu0
        tasks = _ray_tasks(cluster.address)
    finally:
        ray.shutdown()
        cluster.shutdown()
    split = Path(out) / "train"
    text = (split / "index.json").read_text()
    parse = []
    for _ in range(5):
        t = time.thread_time()
        ShardIndex.from_json(text, "index.json")
        parse.append(time.thread_time() - t)
    return {
        "videos": summary.splits["train"].videos,
        "shards": summary.splits["train"].shards,
        "wall_s": wall,
        "driver_cpu_s": cpu,
        "cluster_cpu_s": cluster_cpu,
        "driver_peak_rss_mib": rss_peak_mib(),
        "driver_rss_growth_mib": rss_peak_mib() - rss_before,
        "driver_job_rss_mib": job_rss,
        "ray_tasks": tasks,
        "output_bytes": sum(f.stat().st_size for f in split.iterdir()),
        "index_bytes": len(text.encode()),
        "sidecar_bytes": sum(f.stat().st_size for f in split.glob("*.tar.json")),
        "index_parse_s": min(parse),
    }


def _ray_tasks(address: str) -> int:
    """Tasks the cluster at ``address`` ran (Ray's state API, through its head's dashboard; task events reach
    it about a second late); -1 when it cannot say."""
    from ray.util.state import summarize_tasks

    error: Exception | None = None
    for _ in range(5):
        time.sleep(2)
        try:
            summary = summarize_tasks(address=address, raise_on_missing_output=False)
            per_name = summary["cluster"]["summary"].values()
            return int(sum(s["state_counts"].get("FINISHED", 0) for s in per_name))
        except Exception as exc:  # noqa: BLE001 - a figure the benchmark can do without
            error = exc
    print(f"ray task count unavailable: {type(error).__name__}: {error}", file=sys.stderr)
    return -1


def loader(split_dir: str) -> dict[str, Any]:
    import psutil

    from pipeline.loading.config import LoaderConfig
    from pipeline.loading.planning import epoch_plan
    from pipeline.loading.shard_reading import shard_uris
    from pipeline.loading.train_loader import train_loader

    cfg = LoaderConfig(
        batch_size=8, num_workers=2, input_size=32, scales=(1.0, 0.875), shuffle_buffer=64, decode_threads=1
    )
    start = time.perf_counter()
    batches = train_loader(split_dir, cfg, rank=0, world_size=1, epoch=0)
    open_s = time.perf_counter() - start
    first = []
    for epoch in (0, 1):
        batches.set_epoch(epoch)
        start = time.perf_counter()
        it = iter(batches)
        next(it)
        first.append(time.perf_counter() - start)
        worker_rss = [p.memory_info().rss / 2**20 for p in psutil.Process().children(recursive=True)]
        del it
    uris = shard_uris(split_dir, batches.index)
    start = time.thread_time()
    for rank in range(8):
        epoch_plan(batches.index, uris, cfg, rank, 8, cfg.num_workers, 2, 0)
    plan_s = time.thread_time() - start
    return {
        "shards": len(uris),
        "open_s": open_s,
        "first_batch_s": first[0],
        "next_epoch_first_batch_s": first[1],
        "epoch_plan_8_ranks_s": plan_s,
        "worker_rss_mib": max(worker_rss, default=0.0),
        "rank_rss_mib": psutil.Process().memory_info().rss / 2**20,
    }


def evaluation(videos: int, classes: int, out_dir: str) -> dict[str, Any]:
    import tracemalloc

    import numpy as np

    from tdn.evaluation.metrics import ScoreAccumulator, merge_partials, summary
    from tdn.evaluation.results import EvalResult, write_outputs

    views, per_batch = 30, 8
    rng = np.random.default_rng(0)
    block = rng.random((per_batch * views, classes), dtype=np.float32)
    block /= block.sum(axis=1, keepdims=True)  # one batch of softmax rows, reused (the scores do not matter)

    # The batches' ids, views, crops and labels are the loader's output: built before the timing (building
    # them inside it, as this did until issue 23, timed 30 f-strings per video with the aggregation).
    batches = []
    for first in range(0, videos, per_batch):
        n = min(per_batch, videos - first)
        ids = [f"clip_{v:07d}" for v in range(first, first + n) for _ in range(views)]
        labels = [v % classes for v in range(first, first + n) for _ in range(views)]
        clip = [(i % views) // 3 for i in range(n * views)]
        crop = [i % 3 for i in range(n * views)]
        batches.append((ids, clip, crop, labels, block[: n * views]))

    def aggregate() -> tuple[Any, dict[str, float]]:
        accs = [ScoreAccumulator(), ScoreAccumulator()]  # two replicas, as the Ray pool splits the shards
        for k, batch in enumerate(batches):
            accs[k % 2].add(*batch)
        video = merge_partials([a.result() for a in accs], expected_views=views)
        return video, summary(video)

    cpu0 = time.thread_time()
    aggregate()  # timed without tracemalloc, whose bookkeeping per allocation would be measured too
    aggregate_s = time.thread_time() - cpu0
    tracemalloc.start()
    video, stats = aggregate()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    result = EvalResult(
        model_id="scale",
        arch="resnet50",
        variant="tdn",
        frames="8",
        clips=10,
        crops=3,
        input_size=256,
        short_side=256,
        dataset="scale",
        split="val",
        index_checksum="",
        num_videos=videos,
        top1_pct=100 * stats["top1"],
        top5_pct=100 * stats["top5"],
        mean_class_top1_pct=100 * stats["mean_class_acc"],
        ms_per_video=0.0,
        videos_per_s=0.0,
        gflops=0.0,
    )
    start = time.thread_time()
    write_outputs(out_dir, result, video, [f"class{c:03d}" for c in range(classes)])
    write_s = time.thread_time() - start
    return {
        "videos": videos,
        "aggregate_cpu_s": aggregate_s,
        "aggregate_peak_mib": peak / 2**20,
        "write_outputs_cpu_s": write_s,
        "peak_rss_mib": rss_peak_mib(),
        "output_bytes": sum(f.stat().st_size for f in Path(out_dir).iterdir()),
    }


def prediction(videos_dir: str, out_dir: str, classes: int) -> dict[str, Any]:
    import ray
    import torch
    from ray.cluster_utils import Cluster

    from pipeline.config import config_to_dict
    from pipeline.loading.config import LoaderConfig
    from tdn.checkpoints.project import TrainingState, save_checkpoint
    from tdn.evaluation.model_source import ModelSource
    from tdn.model.networks import ModelConfig, build_model_from_config
    from tdn.prediction.config import PredictConfig
    from tdn.prediction.run import predict
    from tdn.training.config import TrainConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = ModelConfig(arch="resnet18", num_classes=classes, num_segments=4, width=0.25, dropout=0.0)
    torch.manual_seed(0)
    train = TrainConfig(model=cfg, loader=LoaderConfig(input_size=56, eval_short_side=64))
    ckpt = str(out / "model.pt")
    state = TrainingState(train_config=config_to_dict(train))
    save_checkpoint(
        ckpt, build_model_from_config(cfg).eval(), cfg, [f"class{c:03d}" for c in range(classes)], state
    )
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        job = PredictConfig(
            sources=[videos_dir],
            model=ModelSource(uri=ckpt),
            out=str(out / "preds.csv"),
            engine="ray",
            replicas=2,
            videos_per_part=64,
            progress_interval_s=1e9,
            address=cluster.address,
        )
        cpu0, cluster_cpu0 = cpu_s(), descendants_cpu_s()
        sampler = RssSampler()
        start = time.perf_counter()
        summary = predict(job, log=lambda _: None)
        wall = time.perf_counter() - start
        job_rss = sampler.stop()
        cpu, cluster_cpu = cpu_s() - cpu0, descendants_cpu_s() - cluster_cpu0
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {
        "videos": summary.videos,
        "failed": summary.failed,
        "parts": summary.parts,
        "wall_s": wall,
        "driver_cpu_s": cpu,
        "cluster_cpu_s": cluster_cpu,
        "driver_job_rss_mib": job_rss,
        "output_bytes": (out / "preds.csv").stat().st_size,
        "videos_per_s": summary.videos / wall,
    }


def tracking(videos: int, uri: str) -> dict[str, Any]:
    import requests

    from tdn.tracking.tracker import Tracker, TrackingConfig

    calls, sent = [0], [0]
    original = requests.Session.send

    def counting(self: Any, request: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        sent[0] += len(request.body or b"") + sum(len(k) + len(v) for k, v in request.headers.items())
        return original(self, request, **kwargs)

    requests.Session.send = counting  # type: ignore[method-assign]
    cfg = TrackingConfig(uri=uri, experiment="scale", registered_model="")
    tracker = Tracker(cfg, run_key=f"scale-{videos}-{os.getpid()}")
    tracker.log_params({"videos": videos})
    tracker.flush(60)
    base_calls, base_bytes = calls[0], sent[0]
    steps = max(1, videos // GLOBAL_BATCH)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        if step % cfg.log_every_steps == 0:
            tracker.log_metrics(
                {
                    "train/loss": 1.0,
                    "train/lr": 0.01,
                    "train/samples_per_s": 100.0,
                    "train/data_wait_pct": 1.0,
                    "train/next_batch_p50_s": 0.01,
                    "train/next_batch_p95_s": 0.02,
                },
                step=step,
            )
            time.sleep(0.002)  # the training thread's work between two logs
    tracker.log_metrics(
        {"train/epoch_loss": 1.0, "train/epoch_top1_pct": 50.0, "train/epoch_time_s": 1.0}, steps
    )
    tracker.log_metrics({"val/loss": 1.0, "val/top1_pct": 50.0, "val/top5_pct": 80.0}, steps)
    tracker.flush(120)
    seconds = time.perf_counter() - start
    tracker.close()
    return {
        "videos": videos,
        "steps": steps,
        "mlflow_calls": calls[0] - base_calls,
        "mlflow_bytes": sent[0] - base_bytes,
        "seconds": seconds,
    }


def main(argv: list[str]) -> int:
    kind, args = argv[0], argv[1:]
    if kind == "shard":
        out = shard(args[0], args[1], args[2], int(args[3]))
    elif kind == "loader":
        out = loader(args[0])
    elif kind == "eval":
        out = evaluation(int(args[0]), int(args[1]), args[2])
    elif kind == "tracking":
        out = tracking(int(args[0]), args[1])
    elif kind == "predict":
        out = prediction(args[0], args[1], int(args[2]))
    else:
        raise SystemExit(f"unknown measurement {kind!r}")
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
