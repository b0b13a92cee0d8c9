"""Record a GPU run of benchmarks/train_throughput.py in benchmarks/unit_costs.json (replacing the ASSUMPTION).

    python -m benchmarks.train_throughput --split work/train-shards/train --out $OUT/train.json   # on the GPU
    python -m benchmarks.record_train_throughput train.json --gpu-type H100 --date 2026-12-01      # here

The GPU machine has none of this project's Ray/MLflow dependencies and its files come back as JSON; this
script reads that JSON and writes a measured GpuThroughput (TDN training clips/s of the real loop on the
device decode path, else the CPU path; eval views/s = 1000 / the 1x1 evaluation forward's ms per view) and,
when the device path ran, its LoaderCost (1000 / the loader workers' host CPU ms per clip).
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path
from typing import Any

from pipeline.capacity.unit_costs import DEFAULT_PATH, GpuThroughput, LoaderCost, Source, update_unit_costs


def _tdn_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The TDN run without DDP, on the device decode path if it ran."""
    tdn = {r["decode"]: r for r in runs if r["variant"] == "tdn" and not r["ddp"]}
    if not tdn:
        raise SystemExit("record_train_throughput: error: the results hold no TDN training run")
    return tdn.get("device") or tdn["cpu"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, help="the JSON written by train_throughput.py --out")
    p.add_argument("--gpu-type", required=True, help="the unit costs' name for this GPU, e.g. H100, H200")
    p.add_argument("--date", default=date.today().isoformat(), help="when train_throughput.py ran (ISO date)")
    p.add_argument("--unit-costs", type=Path, default=DEFAULT_PATH)
    args = p.parse_args(argv)
    result = json.loads(args.results.read_text())
    header, cfg = result["header"], result["header"]["config"]
    run = _tdn_run(result["runs"])
    eval_1x1 = [e for e in result["evals"] if e["variant"] == "tdn" and e["protocol"] == "1x1"]
    if not eval_1x1:
        raise SystemExit("record_train_throughput: error: the results hold no TDN 1x1 evaluation forward")
    precision = "bf16 autocast" if "cuda" in str(cfg.get("device")) else "float32"
    source = Source(
        command=f"python -m benchmarks.train_throughput --batch {cfg['batch']} --steps {cfg['steps']} "
        f"--workers {cfg['workers']}" + (" --compile" if cfg.get("compile") else ""),
        date=args.date,
        machine=f"{header['device']}, {header['host_cpus']} host CPUs, torch {header['torch']}",
        note=f"{cfg['arch']} {cfg['size']}^2 {precision}, batch {cfg['batch']}, real loop (decode "
        f"{run['decode']}, {cfg['workers']} loader workers): data wait {100 * run['loop']['data_wait_frac']:.1f} %",
        measured=True,
    )
    gpu = GpuThroughput(
        gpu_type=args.gpu_type,
        model=f"TDN-{cfg['arch']} {cfg['size']}^2 {precision}",
        train_clips_per_s=float(run["loop"]["clips_per_s"]),
        eval_views_per_s=1000.0 / float(eval_1x1[0]["ms_per_view"]),
        source=source,
    )
    loader = None
    if run["decode"] == "device" and run["loop"]["worker_cpu_ms_per_clip"] > 0:
        ms = float(run["loop"]["worker_cpu_ms_per_clip"])
        loader = LoaderCost("device", int(cfg["size"]), 1000.0 / ms, source)
    update_unit_costs(args.unit_costs, gpu=gpu, loader=loader)
    print(
        f"{args.unit_costs}: {args.gpu_type} {gpu.train_clips_per_s:.1f} train clips/s, "
        f"{gpu.eval_views_per_s:.1f} eval views/s" + (" + device loader cost" if loader else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
