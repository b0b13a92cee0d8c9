"""TDN vs TSN (vs the released TDN code) per clip: forward, forward+backward, and training-step memory.

    python benchmarks/model_step.py                          # R50, 8 segments, 224^2, batch 1, CPU
    python benchmarks/model_step.py --size 112 --repeats 5   # smaller
    python benchmarks/model_step.py --official /tmp/official_tdn   # + a copy of github MCG-NJU/TDN (ops/)
    python benchmarks/model_step.py --device cuda --dtype bfloat16 --channels-last

Timing: all models are timed interleaved (model A, B, C, A, B, C, ...) after one warm-up each, and the median
of ``--repeats`` runs is reported, so machine-load drift hits every model alike. Both the wall clock and the
process CPU time are reported: on a shared, oversubscribed machine the CPU time of a single-threaded run
(``--threads 1``, the default) measures the work itself, while the wall clock also counts time spent waiting
for a core (and multi-threaded runs pay OpenMP barrier waits per op, which penalises models with many small
ops far more than their work explains). "forward" is inference
(eval mode, no autograd); "fwd+bwd" is a training step without the optimizer (train mode, cross-entropy,
backward). Ratios are against our TSN on the same backbone, input and batch.

Memory (CPU): each model runs one training step in a fresh subprocess; we report the peak resident set size
during the step (VmHWM of /proc/self/status, the kernel's high-water mark) minus the RSS just before it, i.e. gradient buffers + activations kept for backward + workspace, with the model and input
already allocated. We also report the bytes of tensors autograd saves for backward (counted once per storage
through ``torch.autograd.graph.saved_tensors_hooks``), an exact, allocator-independent activation figure.
On CUDA the peak is ``torch.cuda.max_memory_allocated`` during the step minus the allocation before it.
The released code imports torchvision only for its data transforms, which the model never uses: an empty
stub module stands in for it in ``sys.modules`` of this process (nothing is written to the copy; the
project never imports torchvision).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tdn.model.networks import build_model  # noqa: E402


def official_model(path: str, arch: str, segments: int, classes: int) -> torch.nn.Module:
    if path not in sys.path:
        sys.path.insert(0, path)
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))
    import ops.base_module as base_module  # type: ignore[import-not-found]

    # the released builder downloads ImageNet weights; random weights are as good for timing
    base_module.model_zoo = types.SimpleNamespace(load_url=lambda url: {})
    from ops.models import TSN  # type: ignore[import-not-found]

    return TSN(classes, segments, "RGB", base_model=arch, dropout=0.5, partial_bn=False, print_spec=False)


class Runner:
    """A model plus how to feed it the (N, T, 5, 3, H, W) clip."""

    def __init__(self, name: str, model: torch.nn.Module, official: bool, args: argparse.Namespace):
        self.name = name
        self.official = official
        self.args = args
        dev = torch.device(args.device)
        dtype = getattr(torch, args.dtype)
        self.model = model.to(dev)
        if args.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.dtype = dtype
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(args.batch, args.segments, 5, 3, args.size, args.size, generator=g).to(dev)
        self.y = torch.randint(0, args.num_classes, (args.batch,), generator=g).to(dev)

    def _input(self) -> torch.Tensor:
        x = self.x
        if self.official:
            x = x.view(x.shape[0], -1, *x.shape[-2:])
        return x

    def _autocast(self):
        if self.dtype == torch.float32:
            return torch.autocast(self.args.device, enabled=False)
        return torch.autocast(self.args.device, dtype=self.dtype)

    def forward(self) -> None:
        self.model.eval()
        with torch.no_grad(), self._autocast():
            self.model(self._input())

    def train_step(self) -> None:
        self.model.train()
        with self._autocast():
            loss = F.cross_entropy(self.model(self._input()).float(), self.y)
        loss.backward()
        self.model.zero_grad(set_to_none=True)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn: Callable[[], None], device: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def build_runners(args: argparse.Namespace, names: list[str]) -> list[Runner]:
    runners = []
    for name in names:
        torch.manual_seed(0)
        if name == "official":
            model = official_model(args.official, args.arch, args.segments, args.num_classes)
            runners.append(Runner("TDN (released code)", model, True, args))
        else:
            model = build_model(args.arch, args.num_classes, args.segments, name, width=args.width)
            runners.append(Runner(f"{name.upper()} (ours)", model, False, args))
    return runners


def _rss_bytes(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process from /proc/self/status.

    VmHWM belongs to the process's own address space; ``ru_maxrss`` is not used because Linux carries it
    over from the parent across fork+exec, so a child would report the parent's peak.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _memory_child(args: argparse.Namespace, name: str, queue: mp.Queue) -> None:
    torch.set_num_threads(args.threads)
    runner = build_runners(args, [name])[0]
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        runner.train_step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        before = _rss_bytes("VmRSS")
        runner.train_step()
        peak = _rss_bytes("VmHWM") - before

    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        saved[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        runner.model.train()
        with runner._autocast():
            out = runner.model(runner._input())
    activations = sum(saved.values())
    del out
    queue.put((peak, activations))


def measure_memory(args: argparse.Namespace, name: str) -> tuple[int, int]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(args, name, queue))
    proc.start()
    result = queue.get(timeout=1800)
    proc.join()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--arch", default="resnet50", choices=["resnet18", "resnet34", "resnet50", "resnet101"]
    )
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--num-classes", type=int, default=174)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads (1: CPU time = compute time)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--official", help="path of a copy of github MCG-NJU/TDN (the folder holding ops/)")
    parser.add_argument("--no-memory", action="store_true", help="skip the training-step memory measurement")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be >= 5 (medians of fewer runs are noise)")
    if args.official and args.arch not in ("resnet50", "resnet101"):
        parser.error("the released code builds resnet50/resnet101 only")
    if args.official and args.width != 1.0:
        parser.error("the released code has no width multiplier")
    torch.set_num_threads(args.threads)

    names = ["tsn", "tdn"] + (["official"] if args.official else [])
    print(
        f"# {args.arch} {args.segments} segments, {args.size}x{args.size}, batch {args.batch}, width "
        f"{args.width}, {args.device} {args.dtype}{' channels_last' if args.channels_last else ''}, "
        f"{args.threads} threads, median of {args.repeats}"
    )
    print(
        f"# torch {torch.__version__}, python {platform.python_version()}, {platform.machine()}, "
        f"{platform.processor() or platform.platform()}"
    )
    if args.device.startswith("cuda"):
        print(f"# {torch.cuda.get_device_name()}")
    runners = build_runners(args, names)
    for r in runners:  # warm-up: allocator, kernels, lazy init
        r.forward()
        r.train_step()
    fwd: dict[str, list[tuple[float, float]]] = {r.name: [] for r in runners}
    step: dict[str, list[tuple[float, float]]] = {r.name: [] for r in runners}
    for _ in range(args.repeats):
        for r in runners:
            fwd[r.name].append(_timed(r.forward, args.device))
            step[r.name].append(_timed(r.train_step, args.device))

    def med(runs: list[tuple[float, float]], i: int) -> float:
        return statistics.median(run[i] for run in runs)

    base = runners[0].name
    for i, clock in ((0, "wall-clock"), (1, "process CPU time")):
        mf, ms = med(fwd[base], i), med(step[base], i)
        print(
            f"\n[{clock}] {'model':22} {'forward ms':>11} {'/TSN':>6} {'fwd+bwd ms':>11} {'/TSN':>6} "
            f"{'train clips/s':>14}"
        )
        for r in runners:
            f_, s_ = med(fwd[r.name], i), med(step[r.name], i)
            print(
                f"[{clock}] {r.name:22} {1000 * f_ / args.batch:11.1f} {f_ / mf:6.2f} "
                f"{1000 * s_ / args.batch:11.1f} {s_ / ms:6.2f} {args.batch / s_:14.2f}"
            )
        if args.official:
            ours, theirs = med(step["TDN (ours)"], i), med(step["TDN (released code)"], i)
            ours_f, theirs_f = med(fwd["TDN (ours)"], i), med(fwd["TDN (released code)"], i)
            print(
                f"[{clock}] released code / ours: fwd+bwd {theirs / ours:.2f}x, forward {theirs_f / ours_f:.2f}x"
            )
    del runners
    if args.no_memory:
        return 0
    print(f"\n{'model':22} {'step peak MiB':>14} {'/TSN':>6} {'saved activations MiB':>22} {'/TSN':>6}")
    mems = [(n, *measure_memory(args, n)) for n in names]
    p0, a0 = mems[0][1], mems[0][2]
    for n, peak, act in mems:
        label = "TDN (released code)" if n == "official" else f"{n.upper()} (ours)"
        print(f"{label:22} {peak / 2**20:14.1f} {peak / p0:6.2f} {act / 2**20:22.1f} {act / a0:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
