"""benchmarks/train_throughput.py's measurements: one loader iteration of the product's training loop, the
evaluation forward and the device decoder alone, each returning its figures (``benchmarks.train_report``).

Nothing here reads a tar or steps an optimiser: batches come from ``pipeline.loading.train_loader`` and every
step is ``tdn.training.trainer.Trainer.train_step`` (see benchmarks/train_throughput.py for the flow).
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.train_report import DecodeFigures, EvalFigures, LoopFigures, RunFigures, StepSplit
from pipeline.loading.config import LoaderConfig
from pipeline.loading.device_batch import EncodedBatch, decode_batch, make_decoder
from pipeline.loading.prefetch import DevicePrefetcher, WaitClock, batch_on_device
from pipeline.loading.train_loader import train_loader
from tdn.model.networks import ModelConfig, build_model_from_config
from tdn.training.optim import OptimConfig
from tdn.training.trainer import Trainer, TrainerSettings

# ----------------------------------------------------------------------------------------- CPU time


def _proc_cpu_seconds(pid: int) -> float:
    """CPU seconds of every thread of ``pid``: the scheduler's nanosecond counts (/proc/PID/task/*/schedstat),
    else utime + stime of /proc/PID/stat (10 ms ticks: too coarse for a loader worker's share of a short run)."""
    try:
        return sum(int(t.read_text().split()[0]) for t in Path(f"/proc/{pid}/task").glob("*/schedstat")) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU time of this process's live child processes (the loader workers)."""
    pids: list[int] = []
    for task in Path("/proc/self/task").glob("*"):
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return sum(_proc_cpu_seconds(p) for p in pids)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------- runs


def bench_model(args: argparse.Namespace, segments: int, variant: str) -> ModelConfig:
    return ModelConfig(
        arch=args.arch, num_classes=args.num_classes, num_segments=segments, variant=variant, width=args.width
    )


@dataclass(frozen=True)
class Bench:
    """What every run shares: the command line, the device, the split and the FLOPs per clip."""

    args: argparse.Namespace
    device: torch.device
    split: str
    segments: int
    train_flop: dict[str, float]  # variant -> FLOP per training clip (forward + backward = 3 x forward)

    def model_config(self, variant: str) -> ModelConfig:
        return bench_model(self.args, self.segments, variant)

    def loader_config(self, decode: str) -> LoaderConfig:
        a = self.args
        return LoaderConfig(
            batch_size=a.batch,
            num_workers=a.workers,
            input_size=a.size,
            decode_threads=a.decode_threads,
            output_dtype="uint8",  # the GPU recipes' setting (jobs/configs/k400_*): normalised on the device
            pin_memory=self.device.type == "cuda",
            decode=decode,  # type: ignore[arg-type]
        )

    def trainer(self, variant: str, steps_per_epoch: int, ddp: bool) -> Trainer:
        torch.manual_seed(0)
        model = build_model_from_config(self.model_config(variant))
        settings = TrainerSettings(
            optim=OptimConfig(),
            steps_per_epoch=steps_per_epoch,
            global_batch=self.args.batch,
            amp=True,
            channels_last=self.args.channels_last,
            compile=self.args.compile,
        )
        trainer = Trainer(model, settings, self.device)
        if ddp:  # Trainer wraps DDP for world size > 1 only; on one rank the wrapper is put on here
            ids = [self.device.index or 0] if self.device.type == "cuda" else None
            trainer.module = torch.nn.parallel.DistributedDataParallel(trainer.model, device_ids=ids)
            if settings.compile:
                trainer.module = torch.compile(trainer.module)  # type: ignore[assignment]
        return trainer


def run_loop(bench: Bench, variant: str, decode: str, ddp: bool, epoch: int) -> RunFigures:
    """One loader iteration: warm-up, the overlapped pass, then the serialized pass."""
    a, device = bench.args, bench.device
    loader = train_loader(bench.split, bench.loader_config(decode), rank=0, world_size=1, epoch=epoch, seed=0)
    trainer = bench.trainer(variant, len(loader), ddp)
    decoder = make_decoder(device) if decode == "device" else None
    raw = iter(loader)
    clock = WaitClock()
    steps = clock.wrap(DevicePrefetcher(raw, device, decoder))  # the prefetcher pulls from ``raw``
    for _ in range(a.warmup):
        trainer.train_step(*next(steps))
    sync(device)
    clock.waits.clear()
    c_main, c_workers, t0 = time.process_time(), children_cpu_seconds(), time.perf_counter()
    for _ in range(a.steps):
        trainer.train_step(*next(steps))
    sync(device)
    wall = time.perf_counter() - t0
    main_cpu, worker_cpu = time.process_time() - c_main, children_cpu_seconds() - c_workers
    clips = a.steps * a.batch
    flop = bench.train_flop[variant]
    waits = clock.summary(wall)
    loop = LoopFigures(
        clips_per_s=clips / wall,
        data_wait_frac=waits["data_wait_frac"],
        next_batch_p50_s=waits["next_batch_p50_s"],
        next_batch_p95_s=waits["next_batch_p95_s"],
        host_cpu_ms_per_clip=1000 * (main_cpu + worker_cpu) / clips,
        main_cpu_ms_per_clip=1000 * main_cpu / clips,
        worker_cpu_ms_per_clip=1000 * worker_cpu / clips,
        tflop_per_s=clips / wall * flop / 1e12,
        share_of_peak=clips / wall * flop / (a.peak_tflops * 1e12),
    )
    del steps  # the prefetcher's batch in flight is dropped; ``raw`` goes on
    parts, model_cpu = np.zeros(4), 0.0
    for _ in range(a.steps):
        t0 = time.perf_counter()
        x, y = next(raw)
        t1 = time.perf_counter()
        x, y = batch_on_device(x, device, decoder), y.to(device, non_blocking=True)
        sync(device)
        t2, c2 = time.perf_counter(), time.process_time()
        result = trainer.train_step(x, y, timed=True)
        model_cpu += time.process_time() - c2
        parts += (t1 - t0, t2 - t1, result.forward_backward_s, result.optimizer_s)
    wait_s, device_s, fb_s, opt_s = parts / a.steps
    split = StepSplit(
        data_wait_s=wait_s,
        to_device_s=device_s,
        forward_backward_s=fb_s,
        optimizer_s=opt_s,
        step_s=float(parts.sum() / a.steps),
        model_clips_per_s=a.batch / (fb_s + opt_s),
        model_tflop_per_s=a.batch / (fb_s + opt_s) * flop / 1e12,
        model_cpu_s=model_cpu / a.steps,
    )
    del raw, loader, trainer
    gc.collect()  # the loader workers end with their DataLoader, before the next run starts its own
    return RunFigures(variant, decode, ddp, loop, split)


def eval_forward(bench: Bench, variant: str, protocol: str) -> EvalFigures:
    """Trainer.eval_step on one call's views (random input: the forward's cost does not depend on it)."""
    a, device = bench.args, bench.device
    views, size = (1, a.size) if protocol == "1x1" else (30, a.eval_short_side)
    per_call = max(a.eval_batch // views, 1) * views
    trainer = bench.trainer(variant, 1, ddp=False)
    x = torch.randn(per_call, bench.segments, 5, 3, size, size, device=device)
    trainer.eval_step(x)  # warm-up (cuDNN algorithms, allocator)
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(a.eval_repeats):
        trainer.eval_step(x)
    sync(device)
    ms_per_view = 1000 * (time.perf_counter() - t0) / (a.eval_repeats * per_call)
    cpu_ms = 1000 * (time.process_time() - c0) / (a.eval_repeats * per_call)
    return EvalFigures(variant, protocol, size, per_call, ms_per_view, ms_per_view * views, cpu_ms)


def decode_only(bench: Bench) -> DecodeFigures:
    """The device decoder on one batch the loader's workers would ship (read here, in this process)."""
    device, repeats = bench.device, bench.args.decode_repeats
    cfg = replace(bench.loader_config("device"), num_workers=0)
    batch, _ = next(iter(train_loader(bench.split, cfg, rank=0, world_size=1, epoch=0, seed=0)))
    assert isinstance(batch, EncodedBatch)
    decoder = make_decoder(device)
    jpegs = batch.jpegs()
    decoder.decode(jpegs)  # warm-up: nvJPEG handles and buffers
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        decoder.decode(jpegs)
    sync(device)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    t1 = time.perf_counter()
    for _ in range(repeats):
        decode_batch(batch, decoder)
    sync(device)
    per_clip = 1000 * (time.perf_counter() - t1) / (repeats * batch.num_rows)
    n = len(jpegs) * repeats
    return DecodeFigures(type(decoder).__name__, len(jpegs), n / wall, 1000 * cpu / n, per_clip)
