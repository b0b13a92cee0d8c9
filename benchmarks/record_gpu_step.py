"""Record benchmarks/gpu_step.py's GPU figures in benchmarks/unit_costs.json (replacing the ASSUMPTION entry).

    python benchmarks/gpu_step.py --shards work/gpu-shards --out $OUT/gpu.json      # on the GPU machine
    python benchmarks/record_gpu_step.py gpu.json --gpu-type H200 --date 2026-12-01   # here, on its output

The GPU machine has none of this project's dependencies, so gpu_step.py only writes its JSON; this script
reads it and writes a measured GpuThroughput (TDN train clips/s; eval views/s = 1000 / eval forward ms per
clip) and, when the workers part ran, the device path's LoaderCost (1000 / worker host CPU ms per clip).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.capacity.unit_costs import DEFAULT_PATH, GpuThroughput, LoaderCost, Source, update_unit_costs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, help="the JSON written by gpu_step.py --out")
    p.add_argument("--gpu-type", required=True, help="the unit costs' name for this GPU, e.g. H100, H200")
    p.add_argument("--date", default=date.today().isoformat(), help="when gpu_step.py ran (ISO date)")
    p.add_argument("--unit-costs", type=Path, default=DEFAULT_PATH)
    args = p.parse_args(argv)
    result = json.loads(args.results.read_text())
    header, cfg = result["header"], result["header"]["config"]
    source = Source(
        command="python benchmarks/gpu_step.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                                            sorted(cfg.items()) if k in ("batch", "steps")),
        date=args.date,
        machine=f"{header['device']}, {header['host_cpus']} host CPUs, torch {header['torch']}",
        note=f"{cfg.get('arch')} {cfg.get('size')}^2 {cfg.get('dtype')}, batch {cfg.get('batch')}",
        measured=True,
    )  # fmt: skip
    tdn = result["model"]["tdn"]
    gpu = GpuThroughput(
        gpu_type=args.gpu_type,
        model=f"TDN-{cfg.get('arch')} {cfg.get('size')}^2 {cfg.get('dtype')}",
        train_clips_per_s=float(tdn["train_clips_per_s"]),
        eval_views_per_s=1000.0 / float(tdn["eval_forward_ms_per_clip"]),
        source=source,
    )
    loader = None
    if "workers" in result:
        ms = float(result["workers"]["device"]["worker_cpu_ms_per_clip"])
        loader = LoaderCost("device", int(cfg.get("size", 224)), 1000.0 / ms, source)
    update_unit_costs(args.unit_costs, gpu=gpu, loader=loader)
    print(
        f"{args.unit_costs}: {args.gpu_type} {gpu.train_clips_per_s:.1f} train clips/s, "
        f"{gpu.eval_views_per_s:.1f} eval views/s" + (" + device loader cost" if loader else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
