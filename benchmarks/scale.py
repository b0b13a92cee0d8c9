"""How every job's cost grows with the number of videos: the scaling exponent k (cost ~ N^k) of each figure.

    python -m benchmarks.scale [--sizes 1000,4000,16000] [--videos-per-shard 4] [--classes 400] [--work DIR]
                               [--json benchmarks/results/scale.json]
    python -m benchmarks.scale --quick            # sizes 40,80,160: the whole route in about a minute

For each N (one run, every size side by side), on generated data: a few tiny H.264 videos (64x48, 16-40
frames) encoded once and hard-linked under N distinct Kinetics ids with a Kinetics CSV (400 classes), so what
is measured is the pipeline's overhead per video, not decoding. Each measurement runs in a process of its own
(benchmarks/scale_jobs.py, which says exactly what each one does):

    shard     the real shard job on a two-node Ray cluster: wall, driver CPU, cluster CPU, driver peak RSS,
              Ray tasks, output bytes, index.json bytes and parse time (videos_per_shard small: many shards)
    loader    the training loader over those shards: index read, first batch of epoch 0 and 1, epoch plan of
              8 ranks, RSS of a loader worker
    eval      the driver side of 10 clips x 3 crops over N videos x C classes: aggregation CPU and peak
              memory, result files
    tracking  one epoch's MLflow calls and bytes through the rank-0 Tracker against a real ``mlflow server``
    predict   ``python -m jobs.predict``'s library call on the N video files (Ray Data, 2 replicas, CSV parts
              of 64 videos): wall, driver and cluster CPU, driver RSS during the job, output bytes, parts
    driver    the driver-side steps of benchmarks/scale_driver.py (what tests/test_scale.py checks), CPU time

Printed: hardware, versions, the raw figures per N, k fitted by least squares on log-log, and the goal each
figure is held to (time, bytes and counts k <= 1.05; memory sublinear, k < 1). ``--json`` also writes them
(ScaleReport) for the capacity plan.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.scaling import fit_exponent, growth_ratio
from infra.mlflow.command import MlflowServerCommand

ROOT = Path(__file__).resolve().parent.parent
BASE_FRAMES = (16, 24, 32, 40)  # frames of the few encoded videos every id links to


@dataclass(frozen=True)
class Figure:
    """One measured cost at every N."""

    name: str  # "<measurement>/<figure>", e.g. shard/wall_s
    kind: str  # time | bytes | count | memory | result: what goal applies (GOALS)
    values: list[float]  # one per size, in the order of ScaleReport.sizes
    k: float | None  # fitted exponent: cost ~ N^k; None when it cannot be fitted (values not all positive)
    goal: str  # "k <= 1.05", "k < 1" or "fixed cost" (a cost that must not grow at all)
    ok: bool


@dataclass(frozen=True)
class ScaleReport:
    """What benchmarks/scale.py measured (written by --json)."""

    sizes: list[int]  # N, videos
    videos_per_shard: int
    classes: int
    machine: str  # CPU model and count, memory
    versions: str  # python, ray, torch, mlflow, av, numpy
    figures: list[Figure]
    # unit costs at the largest N, for capacity planning: per video unless named otherwise
    shard_cluster_cpu_s_per_video: float
    shard_bytes_per_video: float
    index_bytes_per_shard: float
    eval_aggregate_cpu_s_per_video: float
    mlflow_calls_per_step: float


def machine() -> str:
    import psutil

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = psutil.virtual_memory().total / 2**30
    return f"{model}, {os.cpu_count()} CPUs, {memory:.0f} GiB, load {os.getloadavg()[0]:.0f}"


def versions() -> str:
    import av
    import mlflow
    import numpy
    import ray
    import torch

    return (
        f"python {platform.python_version()}, ray {ray.__version__}, torch {torch.__version__}, "
        f"mlflow {mlflow.__version__}, av {av.__version__}, numpy {numpy.__version__}"
    )


def encode_base(folder: Path) -> list[Path]:
    import av
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, frames in enumerate(BASE_FRAMES):
        path = folder / f"base{k}.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            for i in range(frames):
                rgb = np.full((48, 64, 3), (40 * k + 3 * i) % 256, dtype=np.uint8)
                rgb[:, (i * 2) % 64 :] = 255 - rgb[:, (i * 2) % 64 :]  # a moving edge
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        paths.append(path)
    return paths


def make_dataset(root: Path, n: int, base: list[Path], classes: int) -> Path:
    """N hard links under Kinetics names + train.csv listing them; returns the CSV."""
    videos = root / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    lines = ["label,youtube_id,time_start,time_end,split\n"]
    for i in range(n):
        youtube_id = f"v{i:010d}"
        os.link(base[i % len(base)], videos / f"{youtube_id}_000000_000010.mp4")
        lines.append(f"class{i % classes:03d},{youtube_id},0,10,train\n")
    csv = root / "train.csv"
    csv.write_text("".join(lines))
    return csv


def measure(kind: str, *args: object) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale_jobs", kind, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scale_jobs.py {kind} failed:\n{proc.stderr[-4000:]}")
    print(f"  {kind}: {proc.stdout.strip().splitlines()[-1]}", flush=True)  # raw figures as they come
    return json.loads(proc.stdout.strip().splitlines()[-1])


def start_mlflow(folder: Path) -> tuple[subprocess.Popen, str]:
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = MlflowServerCommand(
        port=port,
        backend_store_uri=f"sqlite:///{folder / 'mlflow.db'}",
        artifacts_destination=str(folder / "artifacts"),
    )
    log = open(folder / "mlflow.log", "ab")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        server.argv(),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=server.env(os.environ),
        start_new_session=True,
    )
    uri = server.uri
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)  # noqa: S310 - 127.0.0.1 only
            return proc, uri
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"mlflow server did not answer on {uri}")


# "result": memory holding the output itself (V x C video scores): linear is the floor
GOALS = {
    "time": "k <= 1.05",
    "bytes": "k <= 1.05",
    "count": "k <= 1.05",
    "memory": "k < 1",
    "result": "k <= 1.05",
    "fixed": "fixed cost",
}
# (measurement, field, kind); "fixed": a cost that must not grow with N at all (k < 0.5 passes)
FIGURES = [
    ("shard", "wall_s", "time"),
    ("shard", "driver_cpu_s", "time"),
    ("shard", "cluster_cpu_s", "time"),
    ("shard", "driver_peak_rss_mib", "memory"),
    ("shard", "driver_job_rss_mib", "memory"),
    ("shard", "ray_tasks", "count"),
    ("shard", "shards", "count"),
    ("shard", "output_bytes", "bytes"),
    ("shard", "index_bytes", "bytes"),
    ("shard", "index_parse_s", "time"),
    ("loader", "open_s", "time"),
    ("loader", "first_batch_s", "time"),
    ("loader", "next_epoch_first_batch_s", "time"),
    ("loader", "epoch_plan_8_ranks_s", "time"),
    ("loader", "worker_rss_mib", "memory"),
    ("eval", "aggregate_cpu_s", "time"),
    ("eval", "aggregate_peak_mib", "result"),
    ("eval", "write_outputs_cpu_s", "time"),
    ("eval", "output_bytes", "bytes"),
    ("tracking", "mlflow_calls", "count"),
    ("tracking", "mlflow_bytes", "bytes"),
    ("predict", "wall_s", "time"),
    ("predict", "driver_cpu_s", "time"),
    ("predict", "cluster_cpu_s", "time"),
    ("predict", "driver_job_rss_mib", "memory"),
    ("predict", "output_bytes", "bytes"),
    ("predict", "parts", "count"),
]


def judge(kind: str, k: float) -> bool:
    if k != k:  # NaN: too few positive values to fit
        return True
    return {"memory": k < 1.0, "fixed": k < 0.5}.get(kind, k <= 1.05)


def write_overhead(sizes: list[int], shard: list[dict[str, Any]], command: str) -> None:
    """The shard job's CPU per video beyond start-up (the slope between the two largest sizes, so the Ray
    cluster's fixed start-up cost drops out) and its index + sidecar bytes per video, as PipelineOverhead."""
    from pipeline.capacity.unit_costs import PipelineOverhead, here, update_unit_costs

    a, b = shard[-2], shard[-1]
    cpu = b["driver_cpu_s"] + b["cluster_cpu_s"] - a["driver_cpu_s"] - a["cluster_cpu_s"]
    cpu /= sizes[-1] - sizes[-2]
    meta = b["index_bytes"] + b.get("sidecar_bytes", 0)
    note = (
        f"marginal CPU of the whole job (driver + every Ray process) per video between N={sizes[-2]} and "
        f"N={sizes[-1]} on 64x48 H.264 videos of 16-40 frames, so it includes their (small) decode and "
        f"JPEG work: an upper bound of the overhead; "
        f"videos_per_shard {b['videos'] // max(1, b['shards'])}; "
        f"shared machine (load {os.getloadavg()[0]:.0f})"
    )
    update_unit_costs(
        overhead=PipelineOverhead(
            shard_cpu_s_per_video=round(cpu, 5),
            index_bytes_per_video=round(meta / b["videos"], 1),
            source=here(command, note),
        )
    )
    print("written: benchmarks/unit_costs.json (overhead)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,4000,16000", help="N, videos, comma-separated")
    parser.add_argument("--quick", action="store_true", help="sizes 40,80,160 (the test suite's smoke run)")
    parser.add_argument("--videos-per-shard", type=int, default=4, help="small: many shards (N/4 at 4)")
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--work", default="", help="folder for the data (default: a temporary one)")
    parser.add_argument("--json", default="", help="also write the figures (ScaleReport) to this file")
    parser.add_argument(
        "--write-unit-costs",
        action="store_true",
        help="record the shard job's overhead per video in benchmarks/unit_costs.json",
    )
    parser.add_argument(
        "--skip", default="", help="measurements to leave out: shard,loader,eval,tracking,predict"
    )
    args = parser.parse_args(argv)
    sizes = [40, 80, 160] if args.quick else [int(s) for s in args.sizes.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    work_ctx = tempfile.TemporaryDirectory(prefix="tdn-scale-") if not args.work else None
    work = Path(args.work or work_ctx.name)  # type: ignore[union-attr]
    print(f"machine: {machine()}\nversions: {versions()}")
    print(
        f"sizes {sizes}, videos_per_shard {args.videos_per_shard}, {args.classes} classes, work {work}\n",
        flush=True,
    )
    base = encode_base(work / "base")
    server, uri = start_mlflow(Path(tempfile.mkdtemp(dir=work))) if "tracking" not in skip else (None, "")
    results: dict[str, list[dict[str, Any]]] = {
        "shard": [],
        "loader": [],
        "eval": [],
        "tracking": [],
        "predict": [],
    }
    try:
        for n in sizes:
            start = time.perf_counter()
            root = work / f"n{n}"
            csv = make_dataset(root, n, base, args.classes)
            if "shard" not in skip:
                results["shard"].append(measure("shard", root, csv, root / "shards", args.videos_per_shard))
                if "loader" not in skip:
                    results["loader"].append(measure("loader", root / "shards" / "train"))
            if "eval" not in skip:
                results["eval"].append(measure("eval", n, args.classes, root / "eval"))
            if "tracking" not in skip:
                results["tracking"].append(measure("tracking", n, uri))
            if "predict" not in skip:
                results["predict"].append(measure("predict", root / "videos", root / "predict", args.classes))
            print(f"N={n}: measured in {time.perf_counter() - start:.0f}s", flush=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    figures = []
    for what, field, kind in FIGURES:
        if len(results[what]) != len(sizes) or any(field not in r for r in results[what]):
            continue
        values = [float(r[field]) for r in results[what]]
        k = fit_exponent(sizes, values)
        fitted = round(k, 3) if math.isfinite(k) else None
        figures.append(Figure(f"{what}/{field}", kind, values, fitted, GOALS[kind], judge(kind, k)))
    columns = "".join(f"{'N=' + str(n):>14s}" for n in sizes)
    print(f"\n{'figure':36s} {'kind':7s}{columns}{'k':>8s}  goal")
    for f in figures:
        row = "".join(f"{v:14.4g}" for v in f.values)
        k = f"{f.k:8.3f}" if f.k is not None else f"{'-':>8s}"
        print(f"{f.name:36s} {f.kind:7s}{row}{k}  {f.goal}{'' if f.ok else '  <-- ABOVE GOAL'}")
    print(
        "\ndriver-side steps (benchmarks/scale_driver.py), CPU time at 4x N over 1x N "
        "(linear ~4, quadratic ~16):"
    )
    from benchmarks.scale_driver import driver_cases

    for case in driver_cases():
        ratio = growth_ratio(case.step, case.make_input, case.small, case.large, repeats=3)
        print(f"  {case.name:18s} {case.small:>5d} -> {case.large:>5d} {case.unit:7s} {ratio:5.2f}x")
    if args.json:
        last = {what: rows[-1] for what, rows in results.items() if rows}
        per = sizes[-1]
        report = ScaleReport(
            sizes=sizes,
            videos_per_shard=args.videos_per_shard,
            classes=args.classes,
            machine=machine(),
            versions=versions(),
            figures=figures,
            shard_cluster_cpu_s_per_video=last["shard"]["cluster_cpu_s"] / per if "shard" in last else 0.0,
            shard_bytes_per_video=last["shard"]["output_bytes"] / per if "shard" in last else 0.0,
            index_bytes_per_shard=(
                last["shard"]["index_bytes"] / last["shard"]["shards"] if "shard" in last else 0.0
            ),
            eval_aggregate_cpu_s_per_video=last["eval"]["aggregate_cpu_s"] / per if "eval" in last else 0.0,
            mlflow_calls_per_step=(
                last["tracking"]["mlflow_calls"] / last["tracking"]["steps"] if "tracking" in last else 0.0
            ),
        )
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(asdict(report), indent=1) + "\n")
        print(f"\nwritten: {args.json}")
    if args.write_unit_costs and len(results["shard"]) >= 2:
        command = " ".join(["python -m benchmarks.scale", *(argv or sys.argv[1:])])
        write_overhead(sizes, results["shard"], command)
    if work_ctx is not None:
        work_ctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
