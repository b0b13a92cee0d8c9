"""Evaluation aggregation against the number of videos, two implementations of tdn/evaluation/metrics.py side
by side: the current one and a baseline file (e.g. the code before a change).

    git show <rev>:tdn/evaluation/metrics.py > /tmp/metrics_before.py
    python -m benchmarks.eval_aggregation --baseline /tmp/metrics_before.py --sizes 1000,4000,16000,32000

What is timed is the driver side of a 10 clips x 3 crops evaluation of N videos x 400 classes, as
benchmarks/scale_jobs.py runs it: batches of 8 videos x 30 views of softmax rows added to two
``ScoreAccumulator``s (two replicas) -> ``merge_partials`` -> ``summary``. The batches (video ids, views,
crops, labels, one block of rows) are built before the timing: the loader makes them, not the aggregation.

Each (implementation, N) runs in a fresh process (heap and caches as a job finds them), ``--repeats`` times,
interleaved; a process times its first aggregation ("cold": fresh memory, page faults, as an evaluation job
runs it once) and the best of three more ("warm"). Times are CPU seconds of the thread. k is fitted on
cost ~ N^k (least squares on log-log, benchmarks/scaling.py) over the medians across processes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from benchmarks.scaling import fit_exponent

VIEWS, PER_BATCH = 30, 8


def load_metrics(path: str) -> ModuleType:
    """tdn.evaluation.metrics, or a metrics.py file (NumPy + stdlib only) loaded under another name."""
    if path == "current":
        import tdn.evaluation.metrics as current

        return current
    spec = importlib.util.spec_from_file_location("metrics_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def batches(videos: int, classes: int) -> list[tuple[list[str], list[int], list[int], list[int], np.ndarray]]:
    rng = np.random.default_rng(0)
    block = rng.random((PER_BATCH * VIEWS, classes), dtype=np.float32)
    block /= block.sum(axis=1, keepdims=True)  # one batch of softmax rows, reused (the scores do not matter)
    out = []
    for first in range(0, videos, PER_BATCH):
        n = min(PER_BATCH, videos - first)
        ids = [f"clip_{v:07d}" for v in range(first, first + n) for _ in range(VIEWS)]
        labels = [v % classes for v in range(first, first + n) for _ in range(VIEWS)]
        clip = [(i % VIEWS) // 3 for i in range(n * VIEWS)]
        crop = [i % 3 for i in range(n * VIEWS)]
        out.append((ids, clip, crop, labels, block[: n * VIEWS]))
    return out


def aggregate(metrics: ModuleType, inputs: list[Any]) -> float:
    """CPU seconds of this thread for one aggregation (garbage collector as in a job: on)."""
    start = time.thread_time()
    accs = [metrics.ScoreAccumulator(), metrics.ScoreAccumulator()]
    for k, batch in enumerate(inputs):
        accs[k % 2].add(*batch)
    video = metrics.merge_partials([a.result() for a in accs], expected_views=VIEWS)
    metrics.summary(video)
    return time.thread_time() - start


def child(impl: str, videos: int, classes: int) -> dict[str, float]:
    metrics = load_metrics(impl)
    inputs = batches(videos, classes)
    cold = aggregate(metrics, inputs)
    warm = min(aggregate(metrics, inputs) for _ in range(3))
    return {"cold_s": cold, "warm_s": warm}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", required=True, help="a metrics.py to compare with (e.g. from git show)")
    p.add_argument("--sizes", default="1000,4000,16000,32000")
    p.add_argument("--classes", type=int, default=400)
    p.add_argument("--repeats", type=int, default=3, help="processes per (implementation, N)")
    p.add_argument("--json", type=Path, help="also write the raw figures here")
    p.add_argument("--child", nargs=2, metavar=("IMPL", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.classes)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    impls = {"before": args.baseline, "after": "current"}
    runs: dict[tuple[str, int], list[dict[str, float]]] = {(i, n): [] for i in impls for n in sizes}
    for _ in range(args.repeats):
        for n in sizes:
            for name, impl in impls.items():
                cmd = [sys.executable, "-m", "benchmarks.eval_aggregation", "--baseline", args.baseline]
                cmd += ["--classes", str(args.classes), "--child", impl, str(n)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                runs[(name, n)].append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"# {args.classes} classes, {VIEWS} views per video, median of {args.repeats} processes, CPU us per video"
    )
    print(f"{'N':>8}" + "".join(f"{f'{i} {w}':>16}" for i in impls for w in ("cold", "warm")))
    med = {
        key: {w: statistics.median(r[f"{w}_s"] for r in rs) for w in ("cold", "warm")}
        for key, rs in runs.items()
    }
    for n in sizes:
        cells = "".join(f"{1e6 * med[(i, n)][w] / n:16.1f}" for i in impls for w in ("cold", "warm"))
        print(f"{n:>8}{cells}")
    fits = {
        f"{i} {w}": fit_exponent(sizes, [med[(i, n)][w] for n in sizes])
        for i in impls
        for w in ("cold", "warm")
    }
    print(f"{'k':>8}" + "".join(f"{fits[f'{i} {w}']:16.3f}" for i in impls for w in ("cold", "warm")))
    print(
        "after/before time at each N (cold): "
        + ", ".join(f"{n}: {med[('after', n)]['cold'] / med[('before', n)]['cold']:.2f}" for n in sizes)
    )
    if args.json:
        args.json.write_text(
            json.dumps({f"{i} {n}": r for (i, n), r in runs.items()} | {"k": fits}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
