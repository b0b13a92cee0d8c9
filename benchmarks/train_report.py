"""benchmarks/train_throughput.py's figures and how they are printed: the loop, the serialized step split,
the evaluation forward and the device decoder, per run, with the TDN/TSN ratios (``tdn_over_tsn``).

Plain dataclasses (``Report`` goes to ``--out`` as JSON through ``dataclasses.asdict``); the header names the
device, the torch/torchvision/python versions, the CPUs and the load average, so that every printed figure
says where it came from.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any

import torch

# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class LoopFigures:
    """The overlapped pass: the real loop (DevicePrefetcher -> Trainer.train_step), ``steps`` steps."""

    clips_per_s: float
    data_wait_frac: float  # time in next() / wall time of the steps
    next_batch_p50_s: float
    next_batch_p95_s: float
    host_cpu_ms_per_clip: float  # this process + its loader workers
    main_cpu_ms_per_clip: float  # this process (the step's host side, device decode, prefetch thread)
    worker_cpu_ms_per_clip: float  # loader worker processes
    tflop_per_s: float  # count_flops MACs x 2 x 3 per clip x clips/s
    share_of_peak: float  # tflop_per_s / --peak-tflops


@dataclass(frozen=True)
class StepSplit:
    """The serialized pass: mean seconds per step of each part (they add up to ``step_s``)."""

    data_wait_s: float  # next() on the loader (its workers run ahead)
    to_device_s: float  # host-to-device copy (+ device decode and augmentation), device synchronised
    forward_backward_s: float  # forward + loss + backward + gradient clipping (Trainer, timed=True)
    optimizer_s: float  # SGD step + schedule (Trainer, timed=True)
    step_s: float
    model_clips_per_s: float  # batch / (forward_backward_s + optimizer_s)
    model_tflop_per_s: float
    model_cpu_s: float  # CPU seconds of this process per train_step (on a shared CPU: what the model costs)


@dataclass(frozen=True)
class RunFigures:
    variant: str  # tdn | tsn
    decode: str  # device | cpu (loader.decode)
    ddp: bool  # the step went through DistributedDataParallel (1 rank)
    loop: LoopFigures
    split: StepSplit


@dataclass(frozen=True)
class EvalFigures:
    variant: str
    protocol: str  # 1x1 | 10x3 (clips x crops)
    size: int  # crop side of each view
    views_per_call: int
    ms_per_view: float
    ms_per_video: float
    cpu_ms_per_view: float  # CPU time of this process (on a shared CPU: what the forward costs)


@dataclass(frozen=True)
class DecodeFigures:
    """One EncodedBatch's JPEGs through ``make_decoder(device)`` (nvJPEG on CUDA, PIL stand-in on a CPU)."""

    decoder: str
    images: int  # JPEGs per call
    images_per_s: float
    host_cpu_ms_per_image: float
    batch_decode_ms_per_clip: float  # device_batch.decode_batch: decode + crop/resize/flip/normalise


@dataclass
class Report:
    header: dict[str, Any]
    runs: list[RunFigures] = field(default_factory=list)
    evals: list[EvalFigures] = field(default_factory=list)
    decode: DecodeFigures | None = None
    ratios: dict[str, float] = field(default_factory=dict)  # TDN/TSN ratios, by name


# ------------------------------------------------------------------------------------------- output


def header(args: argparse.Namespace, device: torch.device, split_info: dict[str, Any]) -> dict[str, Any]:
    if device.type == "cuda":
        import torchvision  # a CUDA build next to a CUDA torch (NvjpegDecoder imports it anyway)

        name, vision = torch.cuda.get_device_name(device), torchvision.__version__
    else:
        name, vision = platform.processor() or platform.machine(), "not imported (CPU: PIL stand-in)"
    return {
        "device": name,
        "torch": torch.__version__,
        "torchvision": vision,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "split": split_info,
        "config": {k: v for k, v in vars(args).items() if k != "out"},
    }


def print_header(h: dict[str, Any], args: argparse.Namespace, dtype: str) -> None:
    s = h["split"]
    print(
        f"# {h['device']} | torch {h['torch']} | torchvision {h['torchvision']} | python {h['python']} | "
        f"{h['host_cpus']} CPUs ({h['usable_cpus']} usable, torch threads {h['torch_threads']}) | "
        f"load {h['load_average'][0]:.1f} | {h['date']}"
    )
    flags = ("channels_last " if args.channels_last and dtype != "float32" else "") + (
        "compiled" if args.compile else "eager"
    )
    print(
        f"# {args.arch} x{args.width} {s['segments']} segments {args.size}^2, batch {args.batch}, {dtype} "
        f"{flags}; {args.workers} loader workers x {args.decode_threads} decode threads; "
        f"{args.warmup} warm-up + {args.steps} steps per pass"
    )
    print(
        f"# split {s['path']}: {s['shards']} shards, {s['samples']} samples"
        + (
            f", listed {s['listed_times']} times per epoch (the same clips read again)"
            if s["listed_times"] > 1
            else ""
        )
    )


def print_run(r: RunFigures, peak: float, batch: int) -> None:
    name = f"{r.variant.upper()}{' +DDP' if r.ddp else ''} decode={r.decode}"
    lp, sp = r.loop, r.split
    print(
        f"loop  {name:<22} {lp.clips_per_s:9.2f} clips/s  data wait {100 * lp.data_wait_frac:5.1f} %  "
        f"next batch p50 {1000 * lp.next_batch_p50_s:8.2f} ms p95 {1000 * lp.next_batch_p95_s:8.2f} ms  "
        f"host CPU {lp.host_cpu_ms_per_clip:8.2f} ms/clip (main {lp.main_cpu_ms_per_clip:.2f}, workers "
        f"{lp.worker_cpu_ms_per_clip:.2f})  {lp.tflop_per_s:8.3g} TFLOP/s = {100 * lp.share_of_peak:.3g} % of "
        f"{peak:.0f}"
    )
    print(
        f"split {name:<22} ms/step: data wait {1000 * sp.data_wait_s:.2f} | to device "
        f"{1000 * sp.to_device_s:.2f} | forward+backward {1000 * sp.forward_backward_s:.2f} | optimiser "
        f"{1000 * sp.optimizer_s:.2f} | step {1000 * sp.step_s:.2f}; model alone {sp.model_clips_per_s:.2f} "
        f"clips/s {sp.model_tflop_per_s:.3g} TFLOP/s, "
        f"CPU {1000 * sp.model_cpu_s / batch:.2f} ms/clip"
    )


def tdn_over_tsn(report: Report) -> dict[str, float]:
    out: dict[str, float] = {}
    runs = {(r.variant, r.decode): r for r in report.runs if not r.ddp}
    for decode in ("device", "cpu"):
        tdn, tsn = runs.get(("tdn", decode)), runs.get(("tsn", decode))
        if tdn and tsn:
            model = (tdn.split.forward_backward_s + tdn.split.optimizer_s) / (
                tsn.split.forward_backward_s + tsn.split.optimizer_s
            )
            out[f"train_step_time_{decode}"] = model
            out[f"train_step_cpu_{decode}"] = tdn.split.model_cpu_s / tsn.split.model_cpu_s
            out[f"loop_time_per_clip_{decode}"] = tsn.loop.clips_per_s / tdn.loop.clips_per_s
    evals = {(e.variant, e.protocol): e for e in report.evals}
    for protocol in ("1x1", "10x3"):
        tdn_e, tsn_e = evals.get(("tdn", protocol)), evals.get(("tsn", protocol))
        if tdn_e and tsn_e:
            out[f"eval_forward_{protocol}"] = tdn_e.ms_per_view / tsn_e.ms_per_view
            out[f"eval_forward_cpu_{protocol}"] = tdn_e.cpu_ms_per_view / tsn_e.cpu_ms_per_view
    return out
