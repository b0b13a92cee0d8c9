"""The GPU input path and model step in one run: nvJPEG decode, TDN vs TSN training, device vs CPU input path.

    python benchmarks/gpu_step.py --shards DIR --out $OUT/gpu.json          # on the GPU machine (defaults)
    python benchmarks/gpu_step.py --shards DIR --device cpu --tiny          # smoke run on a CPU (tests)

``DIR`` holds shard-NNNNNN.tar files written by the shard job (read here with the stdlib ``tarfile``: the GPU
machine has torch, torchvision, numpy and pillow, but no Ray, PyAV, MLflow or webdataset, and this script
imports nothing of them, directly or through the project). One run reports, with the device name, the
versions and the settings:

1. decode: images/s of one batched ``decode_jpeg(list, device)`` call (nvJPEG) on the shards' JPEGs, and the
   host CPU-seconds per image it costs (the PIL stand-in on a CPU);
2. model: TDN and TSN training clips/s (bf16 autocast, channels_last; synthetic input on the device), the
   TDN/TSN time ratio, the share of ``--peak-tflops`` (H100/H200 bf16 dense: 989) that the counted FLOPs per
   clip (3x forward: forward + backward) reach, and eval forward ms per clip;
3. loader workers alone: host CPU-seconds per clip of the device path (read tar members, split the frame
   blob, draw box and flip) and of the CPU path (all that + JPEG decode, crop, resize), and their ratio;
4. the whole device path (workers -> one batched decode + augmentation on the device, overlapped by
   ``DevicePrefetcher`` -> TDN training step) and the CPU path with every core as workers (decode on the CPU,
   uint8 batches pinned, normalised on the device): clips/s, data-wait fraction, p50/p95 time to the next
   batch, host CPU-seconds per clip (main process and workers).

Process CPU time is read from /proc (this process and its loader-worker children).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tarfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.loading.device_batch import encode_batch, make_decoder  # noqa: E402
from pipeline.loading.jpeg_decode import CropTarget, decode_sample  # noqa: E402
from pipeline.loading.prefetch import DevicePrefetcher, WaitClock  # noqa: E402
from pipeline.loading.transforms import DEFAULT_SCALES, flip_decision, multi_scale_crop_box  # noqa: E402
from pipeline.shards.contract import SampleMeta, decode_sample_metadata  # noqa: E402
from tdn.model.flops import count_flops  # noqa: E402
from tdn.model.networks import ModelConfig, TDNNet  # noqa: E402

# --------------------------------------------------------------------------------------------- shards


def tar_samples(path: Path) -> Iterator[tuple[SampleMeta, bytes]]:
    """(metadata, frames blob) per sample of one shard: members <key>.json, <key>.frames grouped by key."""
    members: dict[str, bytes] = {}
    key = None
    with tarfile.open(path) as tar:
        for info in tar:
            if not info.isfile():
                continue
            name_key, _, ext = info.name.rpartition("/")[2].partition(".")
            if key is not None and name_key != key:
                yield decode_sample_metadata(members, f"{path} {key}"), members["frames"]
                members = {}
            key = name_key
            file = tar.extractfile(info)
            members[ext] = file.read() if file is not None else b""
    if members:
        yield decode_sample_metadata(members, f"{path} {key}"), members["frames"]


class ShardStream(IterableDataset):
    """Endless (batch, labels) from the shards, each loader worker starting at another shard. ``mode``:
    "device": EncodedBatch (the workers split blobs and draw boxes only); "cpu": uint8 (B, T, 5, 3, S, S)
    decoded here (PIL draft decode straight at the crop, ``decode_threads`` per worker)."""

    def __init__(self, shards: list[Path], batch: int, size: int, mode: str, decode_threads: int = 1) -> None:
        self.shards, self.batch, self.size, self.mode, self.threads = (
            shards,
            batch,
            size,
            mode,
            decode_threads,
        )

    def _samples(self, worker: int) -> Iterator[tuple[SampleMeta, bytes]]:
        while True:
            for k in range(len(self.shards)):
                yield from tar_samples(self.shards[(worker + k) % len(self.shards)])

    def __iter__(self) -> Iterator[tuple[Any, torch.Tensor]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([0, worker])
        samples = self._samples(worker)
        pool = ThreadPoolExecutor(self.threads) if self.mode == "cpu" and self.threads > 1 else None
        s = self.size
        while True:
            items, labels = [], []
            for row in range(self.batch):
                meta, frames = next(samples)
                box = multi_scale_crop_box(meta.width, meta.height, s, DEFAULT_SCALES, rng)
                flip, label = flip_decision(meta.label, "random", [], rng)
                items.append((frames, meta.jpeg_sizes, meta.width, meta.height, meta.window_positions(),
                              [(row, box, flip)], f"{meta.video_id}"))  # fmt: skip
                labels.append(label)
            y = torch.tensor(labels, dtype=torch.int64)
            if self.mode == "device":
                yield encode_batch(items, self.batch, s), y
                continue
            t = len(items[0][4])
            buf = torch.empty((self.batch, t * 5, s, s, 3), dtype=torch.uint8)

            def decode(item: tuple, buf: torch.Tensor = buf) -> None:
                frames, sizes, width, height, windows, rows, _ = item
                starts = np.cumsum([0, *sizes])
                jpegs = [frames[a:b] for a, b in zip(starts[:-1], starts[1:])]
                targets = [CropTarget(box, flip, buf[r]) for r, box, flip in rows]
                decode_sample(jpegs, width, height, [p for w in windows for p in w], targets)

            for _ in pool.map(decode, items) if pool is not None else map(decode, items):
                pass
            yield buf.view(self.batch, t, 5, s, s, 3).permute(0, 1, 2, 5, 3, 4), y


def loader(stream: ShardStream, workers: int, pin: bool) -> DataLoader:
    return DataLoader(stream, batch_size=None, num_workers=workers, pin_memory=pin, persistent_workers=workers > 0,
                      prefetch_factor=2 if workers > 0 else None)  # fmt: skip


# ------------------------------------------------------------------------------------------ CPU time


def _proc_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


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


# ---------------------------------------------------------------------------------------------- parts


def bench_decode(
    samples: list[tuple[SampleMeta, bytes]], device: torch.device, repeats: int
) -> dict[str, float]:
    decoder = make_decoder(device)
    jpegs = []
    for meta, frames in samples:
        starts = np.cumsum([0, *meta.jpeg_sizes])
        blob = torch.frombuffer(bytearray(frames), dtype=torch.uint8)
        jpegs += [blob[a:b] for a, b in zip(starts[:-1], starts[1:])]
    decoder.decode(jpegs)  # warm-up: nvJPEG handles and buffers
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        decoder.decode(jpegs)
    sync(device)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(jpegs) * repeats
    return {"images": len(jpegs), "images_per_s": n / wall, "host_cpu_ms_per_image": 1000 * cpu / n}


def build(variant: str, args: argparse.Namespace, segments: int, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(arch=args.arch, num_classes=args.num_classes, num_segments=segments, variant=variant,
                      width=args.width)  # type: ignore[arg-type]  # fmt: skip
    model = TDNNet(cfg).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if args.compile else model


class Trainer:
    """The training step of tdn.training.loop: autocast forward, float32 loss, backward, SGD step."""

    def __init__(self, model: torch.nn.Module, args: argparse.Namespace, device: torch.device) -> None:
        self.model, self.device = model, device
        self.dtype = getattr(torch, args.dtype)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model.train()
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            loss = F.cross_entropy(self.model(x).float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def forward(self, x: torch.Tensor) -> None:
        self.model.eval()
        with (
            torch.no_grad(),
            torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32),
        ):
            self.model(x)


def bench_model(args: argparse.Namespace, segments: int, device: torch.device) -> dict[str, Any]:
    x = torch.randn(args.batch, segments, 5, 3, args.size, args.size, device=device)
    y = torch.randint(0, args.num_classes, (args.batch,), device=device)
    out: dict[str, Any] = {}
    trainers = {v: Trainer(build(v, args, segments, device), args, device) for v in ("tsn", "tdn")}
    for _ in range(args.warmup):
        for t in trainers.values():
            t.step(x, y)
            t.forward(x)
    for variant, t in trainers.items():
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            t.step(x, y)
        sync(device)
        train_s = (time.perf_counter() - t0) / args.steps
        t0 = time.perf_counter()
        for _ in range(args.steps):
            t.forward(x)
        sync(device)
        fwd_s = (time.perf_counter() - t0) / args.steps
        cfg = ModelConfig(arch=args.arch, num_classes=args.num_classes, num_segments=segments, variant=variant,
                          width=args.width)  # type: ignore[arg-type]  # fmt: skip
        train_flop = 3 * 2 * count_flops(cfg, args.size).gmacs * 1e9  # forward + backward = 3x forward
        clips = args.batch / train_s
        out[variant] = {"train_clips_per_s": clips, "train_tflop_per_s": clips * train_flop / 1e12,
                        "utilisation_of_peak": clips * train_flop / (args.peak_tflops * 1e12),
                        "eval_forward_ms_per_clip": 1000 * fwd_s / args.batch}  # fmt: skip
    out["tdn_over_tsn_time"] = out["tsn"]["train_clips_per_s"] / out["tdn"]["train_clips_per_s"]
    return out


def bench_workers(args: argparse.Namespace, shards: list[Path], mode: str) -> dict[str, float]:
    """Host CPU of a loader worker's work alone (no model, no device), per clip: the stream runs in this
    process, on one thread, so ``time.process_time`` measures exactly it (the /proc tick is 10 ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    it = iter(ShardStream(shards, args.batch, args.size, mode))
    next(it)
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(args.probe_batches):
        next(it)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    torch.set_num_threads(threads)
    clips = args.probe_batches * args.batch
    return {"worker_cpu_ms_per_clip": 1000 * cpu / clips, "clips_per_s": clips / wall}


def bench_pipeline(args: argparse.Namespace, shards: list[Path], mode: str, workers: int,
                   device: torch.device) -> dict[str, float]:  # fmt: skip
    """Loader workers -> DevicePrefetcher -> TDN training step, timed over ``--steps`` steps after warm-up."""
    stream = ShardStream(shards, args.batch, args.size, mode, decode_threads=1)
    batches = DevicePrefetcher(loader(stream, workers, pin=device.type == "cuda"), device,
                               make_decoder(device) if mode == "device" else None)  # fmt: skip
    trainer = Trainer(build("tdn", args, args.segments, device), args, device)
    clock = WaitClock()
    it = clock.wrap(batches)
    for _ in range(args.warmup):
        trainer.step(*next(it))
    sync(device)
    clock.waits.clear()
    c_main, c_workers, t0 = time.process_time(), children_cpu_seconds(), time.perf_counter()
    for _ in range(args.steps):
        trainer.step(*next(it))
    sync(device)
    wall = time.perf_counter() - t0
    main_cpu, worker_cpu = time.process_time() - c_main, children_cpu_seconds() - c_workers
    del it
    clips = args.steps * args.batch
    return {
        "workers": workers,
        "clips_per_s": clips / wall,
        **clock.summary(wall),
        "host_cpu_ms_per_clip": 1000 * (main_cpu + worker_cpu) / clips,
        "main_cpu_ms_per_clip": 1000 * main_cpu / clips,
        "worker_cpu_ms_per_clip": 1000 * worker_cpu / clips,
    }


# ------------------------------------------------------------------------------------------------ main


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shards", required=True, type=Path, help="folder of shard-*.tar files")
    p.add_argument("--out", type=Path, help="write every figure to this JSON file too")
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="ResNet-18 x0.25, 64 px, a few steps (CPU smoke run)")
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32, help="clips per training step")
    p.add_argument("--num-classes", type=int, default=400)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], help="default: bfloat16 on CUDA, else float32")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action="store_true", help="torch.compile the models")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--decode-repeats", type=int, default=10)
    p.add_argument("--device-workers", type=int, default=8, help="loader workers of the device path")
    p.add_argument("--cpu-workers", type=int, default=os.cpu_count() or 1, help="CPU path loader workers")
    p.add_argument("--probe-batches", type=int, default=10)
    p.add_argument("--parts", default="decode,model,workers,pipeline", help="comma-separated subset to run")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="device bf16 dense peak (H100/H200: 989)")
    args = p.parse_args(argv)
    if args.tiny:
        args.arch, args.width, args.size, args.batch, args.num_classes = "resnet18", 0.25, 64, 2, 10
        args.steps, args.warmup, args.decode_repeats, args.probe_batches = 2, 1, 1, 3
        args.device_workers, args.cpu_workers = 1, 1
    if args.dtype is None:
        args.dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    device = torch.device(args.device)
    shards = sorted(args.shards.glob("*.tar"))
    if not shards:
        print(f"error: no .tar shards in {args.shards}", file=sys.stderr)
        return 2
    samples = [s for _, s in zip(range(max(args.batch, 4)), tar_samples(shards[0]))]
    args.segments = samples[0][0].num_segments
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    header = {"device": name, "torch": torch.__version__, "python": platform.python_version(),
              "host_cpus": os.cpu_count(), "shards": len(shards),
              "config": {k: str(v) for k, v in vars(args).items()}}  # fmt: skip
    print(f"# {name} | torch {torch.__version__} | python {header['python']} | {os.cpu_count()} CPUs")
    flags = (" channels_last" if args.channels_last else "") + (" compile" if args.compile else "")
    print(
        f"# {args.arch} x{args.width} {args.segments} segments {args.size}^2 batch {args.batch} {args.dtype}"
        f"{flags}, {len(shards)} shards"
    )
    result: dict[str, Any] = {"header": header}

    parts = set(args.parts.split(","))
    if device.type == "cuda":
        import torchvision  # a CUDA build next to a CUDA torch; NvjpegDecoder imports it anyway

        header["torchvision"] = torchvision.__version__
    else:
        header["torchvision"] = "not imported (PIL stand-in decodes)"
    print(f"# torchvision {header['torchvision']}")
    if "decode" in parts:
        result["decode"] = d = bench_decode(samples, device, args.decode_repeats)
        how = "nvJPEG batched" if device.type == "cuda" else "PIL stand-in"
        print(
            f"decode ({how}): {d['images_per_s']:.0f} images/s, host CPU {d['host_cpu_ms_per_image']:.3f} "
            f"ms/image ({d['images']} JPEGs per call)"
        )

    if "model" in parts:
        report_model(result, args, device)
    if "workers" in parts:
        report_workers(result, args, shards)
    if "pipeline" in parts:
        report_pipeline(result, args, shards, device)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"# written {args.out}")
    return 0


def report_model(result: dict[str, Any], args: argparse.Namespace, device: torch.device) -> None:
    result["model"] = m = bench_model(args, args.segments, device)
    for v in ("tsn", "tdn"):
        r = m[v]
        print(f"model {v.upper()}: {r['train_clips_per_s']:.1f} train clips/s, "
              f"{r['train_tflop_per_s']:.1f} TFLOP/s = {100 * r['utilisation_of_peak']:.1f} % of {args.peak_tflops:.0f}, eval forward "
              f"{r['eval_forward_ms_per_clip']:.2f} ms/clip")  # fmt: skip
    print(f"model TDN/TSN time ratio: {m['tdn_over_tsn_time']:.2f}")


def report_workers(result: dict[str, Any], args: argparse.Namespace, shards: list[Path]) -> None:
    result["workers"] = w = {mode: bench_workers(args, shards, mode) for mode in ("device", "cpu")}
    ratio = w["device"]["worker_cpu_ms_per_clip"] / max(w["cpu"]["worker_cpu_ms_per_clip"], 1e-9)
    w["device_over_cpu"] = ratio
    for mode in ("device", "cpu"):
        print(
            f"loader workers, {mode} path: {w[mode]['worker_cpu_ms_per_clip']:.2f} host CPU ms/clip "
            f"({w[mode]['clips_per_s']:.1f} clips/s on one core)"
        )
    print(f"loader workers, host CPU per clip device/cpu: {ratio:.3f}")


def report_pipeline(
    result: dict[str, Any], args: argparse.Namespace, shards: list[Path], device: torch.device
) -> None:
    result["pipeline"] = {"device": bench_pipeline(args, shards, "device", args.device_workers, device),
                          "cpu": bench_pipeline(args, shards, "cpu", args.cpu_workers, device)}  # fmt: skip
    for mode, r in result["pipeline"].items():
        print(
            f"pipeline {mode} path ({r['workers']} workers): {r['clips_per_s']:.1f} clips/s, data wait "
            f"{100 * r['data_wait_frac']:.1f} %, next batch p50 {1000 * r['next_batch_p50_s']:.1f} ms p95 "
            f"{1000 * r['next_batch_p95_s']:.1f} ms, host CPU {r['host_cpu_ms_per_clip']:.2f} ms/clip "
            f"(main {r['main_cpu_ms_per_clip']:.2f}, workers {r['worker_cpu_ms_per_clip']:.2f})"
        )


if __name__ == "__main__":
    raise SystemExit(main())
