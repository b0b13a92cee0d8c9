"""One measurement of benchmarks/scale.py, run in a process of its own so that its peak memory is its own.

    python benchmarks/scale_jobs.py shard    ROOT ANNOTATIONS OUT VIDEOS_PER_SHARD
    python benchmarks/scale_jobs.py loader   SPLIT_DIR
    python benchmarks/scale_jobs.py eval     VIDEOS CLASSES OUT_DIR
    python benchmarks/scale_jobs.py tracking VIDEOS TRACKING_URI

Each prints one JSON object (its figures) as the last line of stdout.

- shard: the real shard job (pipeline.shards.job.run_shard_job, Kinetics annotations) on a two-node Ray
  cluster started by this process (ray.cluster_utils.Cluster, as tests/conftest.py), so every Ray process is
  a descendant of this one and its CPU time can be summed. Driver figures are this process's own.
- loader: pipeline.loading.train_loader over the split (2 loader workers): index read, first batch of epoch 0
  and of epoch 1 (persistent workers: the per-epoch overhead), the epoch plan of 8 ranks, each worker's RSS.
- eval: the driver side of a 10 clips x 3 crops evaluation over N videos and C classes with random softmax
  scores in batches of 8 videos (as score_shards adds them): ScoreAccumulator per replica (2) ->
  merge_partials -> summary -> write_outputs. Peak Python/NumPy memory (tracemalloc) and CPU time per video.
- tracking: one training epoch's MLflow calls through tdn.tracking.tracker.Tracker as the training loop makes
  them (train/* every log_every_steps steps, epoch and val metrics once), against a real ``mlflow server``;
  HTTP requests and bytes counted by wrapping requests.Session.send in this process only.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GLOBAL_BATCH = 64  # 8 GPUs x 8 clips: the paper's Kinetics setting, for the steps of one epoch (tracking)


def _rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _descendants_cpu_s() -> float:
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


class _RssSampler:
    """The largest RSS of this process while the job runs, sampled every 50 ms (ru_maxrss is the peak since
    the process started, which the Ray cluster's start-up sets)."""

    def __init__(self) -> None:
        import threading

        import psutil

        self.peak, self._process, self._done = 0, psutil.Process(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.peak / 2**20


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
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": True,
                                                            "dashboard_port": dashboard_port})  # fmt: skip
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        cfg = ShardConfig(
            dataset=DatasetConfig(format="kinetics", root=root, annotations=annotations), output=out,
            splits=["train"], train=SplitShardConfig("train", 2, 0), videos_per_shard=videos_per_shard,
            progress_interval_s=1e9,
        )  # fmt: skip
        rss_before, cpu0, cluster_cpu0 = _rss_peak_mib(), _cpu_s(), _descendants_cpu_s()
        sampler = _RssSampler()
        start = time.perf_counter()
        summary = run_shard_job(cfg)
        wall = time.perf_counter() - start
        job_rss = sampler.stop()
        cpu, cluster_cpu = _cpu_s() - cpu0, _descendants_cpu_s() - cluster_cpu0
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
        "videos": summary.splits["train"].videos, "shards": summary.splits["train"].shards, "wall_s": wall,
        "driver_cpu_s": cpu, "cluster_cpu_s": cluster_cpu, "driver_peak_rss_mib": _rss_peak_mib(),
        "driver_rss_growth_mib": _rss_peak_mib() - rss_before, "driver_job_rss_mib": job_rss,
        "ray_tasks": tasks,
        "output_bytes": sum(f.stat().st_size for f in split.iterdir()), "index_bytes": len(text.encode()),
        "sidecar_bytes": sum(f.stat().st_size for f in split.glob("*.tar.json")),
        "index_parse_s": min(parse),
    }  # fmt: skip


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

    cfg = LoaderConfig(batch_size=8, num_workers=2, input_size=32, scales=(1.0, 0.875), shuffle_buffer=64,
                       decode_threads=1)  # fmt: skip
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
    return {"shards": len(uris), "open_s": open_s, "first_batch_s": first[0],
            "next_epoch_first_batch_s": first[1], "epoch_plan_8_ranks_s": plan_s,
            "worker_rss_mib": max(worker_rss, default=0.0),
            "rank_rss_mib": psutil.Process().memory_info().rss / 2**20}  # fmt: skip


def evaluation(videos: int, classes: int, out_dir: str) -> dict[str, Any]:
    import tracemalloc

    import numpy as np

    from tdn.evaluation.metrics import ScoreAccumulator, merge_partials, summary
    from tdn.evaluation.results import EvalResult, write_outputs

    views, per_batch = 30, 8
    rng = np.random.default_rng(0)
    block = rng.random((per_batch * views, classes), dtype=np.float32)
    block /= block.sum(axis=1, keepdims=True)  # one batch of softmax rows, reused (the scores do not matter)

    def aggregate() -> tuple[Any, dict[str, float]]:
        accs = [ScoreAccumulator(), ScoreAccumulator()]  # two replicas, as the Ray pool splits the shards
        for first in range(0, videos, per_batch):
            n = min(per_batch, videos - first)
            ids = [f"clip_{v:07d}" for v in range(first, first + n) for _ in range(views)]
            labels = [v % classes for v in range(first, first + n) for _ in range(views)]
            clip = [(i % views) // 3 for i in range(n * views)]
            crop = [i % 3 for i in range(n * views)]
            accs[(first // per_batch) % 2].add(ids, clip, crop, labels, block[: n * views])
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
        model_id="scale", arch="resnet50", variant="tdn", frames="8", clips=10, crops=3, input_size=256,
        short_side=256, dataset="scale", split="val", index_checksum="", num_videos=videos,
        top1_pct=100 * stats["top1"], top5_pct=100 * stats["top5"],
        mean_class_top1_pct=100 * stats["mean_class_acc"],
        ms_per_video=0.0, videos_per_s=0.0, gflops=0.0,
    )  # fmt: skip
    start = time.thread_time()
    write_outputs(out_dir, result, video, [f"class{c:03d}" for c in range(classes)])
    write_s = time.thread_time() - start
    return {"videos": videos, "aggregate_cpu_s": aggregate_s, "aggregate_peak_mib": peak / 2**20,
            "write_outputs_cpu_s": write_s, "peak_rss_mib": _rss_peak_mib(),
            "output_bytes": sum(f.stat().st_size for f in Path(out_dir).iterdir())}  # fmt: skip


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
            tracker.log_metrics({"train/loss": 1.0, "train/lr": 0.01, "train/samples_per_s": 100.0,
                                 "train/data_wait_pct": 1.0, "train/next_batch_p50_s": 0.01,
                                 "train/next_batch_p95_s": 0.02}, step=step)  # fmt: skip
            time.sleep(0.002)  # the training thread's work between two logs
    tracker.log_metrics(
        {"train/epoch_loss": 1.0, "train/epoch_top1_pct": 50.0, "train/epoch_time_s": 1.0}, steps
    )
    tracker.log_metrics({"val/loss": 1.0, "val/top1_pct": 50.0, "val/top5_pct": 80.0}, steps)
    tracker.flush(120)
    seconds = time.perf_counter() - start
    tracker.close()
    return {"videos": videos, "steps": steps, "mlflow_calls": calls[0] - base_calls,
            "mlflow_bytes": sent[0] - base_bytes, "seconds": seconds}  # fmt: skip


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
    else:
        raise SystemExit(f"unknown measurement {kind!r}")
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
