"""The project's training loop, measured: shard loader -> DevicePrefetcher -> Trainer, one process, no Ray.

    python -m benchmarks.train_throughput --split work/train-shards/train --out $OUT/train.json   # a GPU
    python -m benchmarks.train_throughput --split DIR --device cpu --batch 2 --steps 3 --warmup 1   # a CPU

``--split`` is a training split written by the shard job (index.json + shard-*.tar). Nothing here reads a
tar or steps an optimiser: batches come from ``pipeline.loading.train_loader`` (its loader workers, its
shard reader with the read-time checks) and every step is ``tdn.training.trainer.Trainer.train_step``, the
step the Ray training loop runs. Per model variant (TDN, TSN) and decode path (``loader.decode``), one
loader iteration of one rank (world size 1)::

    train_loader (--workers processes) --(x uint8 | EncodedBatch, y)-->
      warm-up: --warmup steps of the loop below (worker start, shuffle buffers, cuDNN / compile)
      overlapped (the real loop, --steps steps): DevicePrefetcher (batch k+1 copied, or decoded by nvJPEG,
          on a side CUDA stream while step k runs) -> Trainer.train_step(x, y)
          => clips/s, data wait (time in next(), as tdn/training/epoch.py counts it), p50/p95 time to the
             next batch, host CPU ms per clip (this process + its loader workers, /proc), achieved TFLOP/s
             (tdn.model.flops.count_flops MACs x 2 x 3 per training clip) and its share of --peak-tflops
      serialized (--steps steps): next() = data wait | prefetch.batch_on_device (+ device decode), device
          synchronised = host-to-device | Trainer.train_step(timed=True) = forward+backward | optimiser

then the evaluation forward (``Trainer.eval_step``, views of one call batched) at 1x1 (--size) and 10x3
(--eval-short-side crops) on random input of the model's shape, ms per view and per video; with
``--parts decode``, one batch's JPEGs through the device decoder alone (nvJPEG images/s on CUDA).

Epochs: a split smaller than one loader iteration needs (warm-up + 2 x --steps steps) is listed several
times over in a temporary split folder (hard links to the same tars, an index that names each copy): the
loader reads and decodes the same clips again, at the same cost per clip, and the run says so. A real
Kinetics epoch is ~900 steps per GPU at batch 32 x 8 GPUs; an epoch end mid-measurement would add the
workers' restart (shuffle buffers refilled) to a few steps.

``--ddp`` adds, per decode path, a TDN run whose step goes through DistributedDataParallel on a 1-rank
process group (gloo on CPU, NCCL on CUDA): the wrapper's cost on one GPU. ``Trainer`` wraps DDP only for
world size > 1, so this script wraps ``trainer.module`` itself after construction.

Modules: ``benchmarks.train_runs`` measures (one loader iteration, the evaluation forward, the decoder alone),
``benchmarks.train_report`` holds the figures and prints them, this one parses the command line, relists a
small split and runs the parts in order.

Imports nothing of Ray, PyAV, MLflow, webdataset or simplejpeg (the GPU machine has none of them;
tests/test_train_throughput.py runs it with them blocked); torchvision only on CUDA (nvJPEG).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from benchmarks.train_report import Report, header, print_header, print_run, tdn_over_tsn
from benchmarks.train_runs import Bench, bench_model, decode_only, eval_forward, run_loop
from pipeline.loading.shard_reading import read_index
from tdn.model.flops import count_flops

# ------------------------------------------------------------------------------------------- split


def relisted_split(split_dir: str, times: int, work: Path) -> str:
    """A split folder in ``work`` whose index lists each shard of ``split_dir`` ``times`` times (hard links,
    else symbolic links, named shard-NNNNNN.tar; sizes and sha256 as in the original index, so the loader's
    read-time checks still run)."""
    index = read_index(split_dir)
    out = work / "relisted"
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for _ in range(times):
        for entry in index.shards:
            name = f"shard-{len(entries):06d}.tar"
            src, dst = Path(split_dir) / entry.name, out / name
            try:
                os.link(src, dst)
            except OSError:
                dst.symlink_to(src.resolve())
            entries.append(replace(entry, name=name))
    relisted = replace(
        index,
        shards=entries,
        num_samples=index.num_samples * times,
        num_videos=index.num_videos * times,
        checksum="",
    ).sealed()
    (out / "index.json").write_text(relisted.to_json())
    return str(out)


# --------------------------------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--split", required=True, help="training split folder written by the shard job")
    p.add_argument("--out", type=Path, help="write every figure to this JSON file")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--parts", default="train,eval,decode", help="comma-separated: train, eval, decode")
    p.add_argument("--variants", default="tdn,tsn", help="model variants, comma-separated")
    p.add_argument("--decode", default="device,cpu", help="loader.decode paths to run, comma-separated")
    p.add_argument("--ddp", action="store_true", help="add a TDN run through DDP on a 1-rank group")
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--num-classes", type=int, help="classifier outputs (default: the split's classes)")
    p.add_argument("--size", type=int, default=224, help="training crop / 1x1 evaluation crop")
    p.add_argument("--eval-short-side", type=int, default=256, help="10x3 evaluation crop side")
    p.add_argument("--batch", type=int, default=32, help="clips per training step")
    p.add_argument("--workers", type=int, default=8, help="loader worker processes (loader cores)")
    p.add_argument("--decode-threads", type=int, default=1, help="JPEG threads per worker (decode cpu)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before the overlapped pass")
    p.add_argument("--steps", type=int, default=50, help="timed steps of each pass")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action="store_true", help="torch.compile (TrainerSettings.compile)")
    p.add_argument("--eval-batch", type=int, default=60, help="views per evaluation forward call")
    p.add_argument("--eval-repeats", type=int, default=5)
    p.add_argument("--decode-repeats", type=int, default=10)
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100/H200 SXM: 989)")
    p.add_argument("--threads", type=int, help="torch threads of this process (default: torch's)")
    p.add_argument("--work", type=Path, help="folder for a relisted split (default: a temporary one)")
    args = p.parse_args(argv)
    unknown = set(args.parts.split(",")) - {"train", "eval", "decode"}
    bad_decode = set(args.decode.split(",")) - {"device", "cpu"}
    if unknown or bad_decode or args.steps < 1 or args.warmup < 0 or args.workers < 0:
        p.error(
            f"bad --parts {sorted(unknown)} / --decode {sorted(bad_decode)} / --steps / --warmup / --workers"
        )
    return args


def prepare_split(args: argparse.Namespace, work: Path) -> tuple[str, dict[str, Any]]:
    """The split, relisted when one epoch has fewer steps than a run needs."""
    index = read_index(args.split)
    needed = (args.warmup + 2 * args.steps + 2) * args.batch  # + the prefetcher's batch in flight, + 1
    times = max(1, -(-needed // max(index.num_videos, 1)))
    split = relisted_split(args.split, times, work) if times > 1 else args.split
    segments = index.sampling.num_segments
    if args.num_classes is None:
        args.num_classes = len(index.classes)
    elif args.num_classes < len(index.classes):
        raise SystemExit(
            f"train_throughput: error: --num-classes {args.num_classes} < the split's {len(index.classes)}"
        )
    info = {
        "path": args.split,
        "shards": len(index.shards),
        "samples": index.num_samples,
        "videos": index.num_videos,
        "bytes": sum(s.bytes for s in index.shards),
        "segments": segments,
        "classes": len(index.classes),
        "listed_times": times,
    }
    return split, info


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.work is not None:
        return measure(args, args.work)
    with tempfile.TemporaryDirectory(prefix="train-throughput-") as work:
        return measure(args, Path(work))


def measure(args: argparse.Namespace, work: Path) -> int:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    split, info = prepare_split(args, work)
    dtype = "bfloat16 autocast" if device.type == "cuda" else "float32"
    report = Report(header(args, device, info))
    print_header(report.header, args, dtype)
    variants, decodes, parts = args.variants.split(","), args.decode.split(","), args.parts.split(",")
    flop = {
        v: 3 * 2 * 1e9 * count_flops(bench_model(args, info["segments"], v), args.size).gmacs
        for v in variants
    }
    bench = Bench(args, device, split, info["segments"], flop)
    if "decode" in parts:
        report.decode = d = decode_only(bench)
        print(
            f"decode {d.decoder}: {d.images_per_s:.0f} images/s ({d.images} JPEGs per call), host CPU "
            f"{d.host_cpu_ms_per_image:.3f} ms/image; decode_batch (decode + crop/resize/flip/normalise) "
            f"{d.batch_decode_ms_per_clip:.2f} ms/clip"
        )
    if "train" in parts:
        if args.ddp:
            start_one_rank_group(device)
        runs = [(v, d, False) for d in decodes for v in variants]
        runs += [("tdn", d, True) for d in decodes] if args.ddp and "tdn" in variants else []
        for epoch, (variant, decode, ddp) in enumerate(runs):
            report.runs.append(run_loop(bench, variant, decode, ddp, epoch))
            print_run(report.runs[-1], args.peak_tflops, args.batch)
            sys.stdout.flush()
    if "eval" in parts:
        for variant in variants:
            for protocol in ("1x1", "10x3"):
                report.evals.append(e := eval_forward(bench, variant, protocol))
                print(
                    f"eval  {variant.upper()} {protocol:<5} {e.size}^2, {e.views_per_call} views per call: "
                    f"{e.ms_per_view:.3f} ms/view, {e.ms_per_video:.3f} ms/video; CPU {e.cpu_ms_per_view:.3f} ms/view"
                )
                sys.stdout.flush()
    report.ratios = tdn_over_tsn(report)
    for name, ratio in report.ratios.items():
        print(f"TDN/TSN {name}: {ratio:.3f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(asdict(report), indent=2, default=str))
        print(f"# written {args.out}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def start_one_rank_group(device: torch.device) -> None:
    """A 1-rank process group on a free local port (for --ddp)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=0,
        world_size=1,
    )


if __name__ == "__main__":
    raise SystemExit(main())
