"""TDN vs TSN (vs the released TDN code) per clip: forward, forward+backward, and training-step memory.

    python -m benchmarks.model_step                          # R50, 8 segments, 224^2, batch 1, 1 thread, CPU
    python -m benchmarks.model_step --batch 1 8 --threads 1 2 --repeats 7 --json run.json
    python -m benchmarks.model_step --official /tmp/official_tdn   # + a copy of github MCG-NJU/TDN (ops/)
    python -m benchmarks.model_step --device cuda --dtype bfloat16 --channels-last
    python -m benchmarks.timing compare run1.json run2.json  # do two runs agree (every ratio within 5 %)?

Timing follows the one protocol of ``benchmarks/timing.py``: one process, all models built first, one
warm-up call each, then ``--repeats`` interleaved rounds (TSN forward, TSN fwd+bwd, TDN forward, ...), each
call timed by the wall clock and the process CPU time; medians with quartiles, ratios of medians with the
quartiles of the per-round ratios. Each (batch, threads) setting is its own protocol run, one after the
other in the same process (``torch.set_num_threads``). On a shared, oversubscribed machine the CPU time of a
single-threaded run measures the work itself, while the wall clock also counts time spent waiting for a
core (and multi-threaded runs pay OpenMP barrier waits per op, which penalises models with many small ops
far more than their work explains). "forward" is inference (eval mode, no autograd); "fwd+bwd" is a
training step without the optimizer (train mode, cross-entropy, backward). Ratios are against our TSN on
the same backbone, input, batch and threads; "ours/released" divides our TDN's time by the released code's.

Memory (CPU): each model runs one training step in a fresh subprocess (the first batch and thread count);
we report the peak resident set size during the step (VmHWM of /proc/self/status, the kernel's high-water
mark) minus the RSS just before it, i.e. gradient buffers + activations kept for backward + workspace, with
the model and input already allocated. We also report the bytes of tensors autograd saves for backward
(counted once per storage through ``torch.autograd.graph.saved_tensors_hooks``), an exact,
allocator-independent activation figure. On CUDA the peak is ``torch.cuda.max_memory_allocated`` during the
step minus the allocation before it.
The released code imports torchvision only for its data transforms, which the model never uses: an empty
stub module stands in for it in ``sys.modules`` of this process (nothing is written to the copy; the
project never imports torchvision).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.timing import Case, Protocol, TimingResult, format_ms, format_ratio, run_protocol
from tdn.model.networks import build_model

TSN, TDN, RELEASED = "TSN (ours)", "TDN (ours)", "TDN (released code)"
FORWARD, STEP = "forward", "fwd+bwd"


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

    def __init__(
        self, name: str, model: torch.nn.Module, official: bool, args: argparse.Namespace, batch: int
    ):
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
        self.x = torch.randn(batch, args.segments, 5, 3, args.size, args.size, generator=g).to(dev)
        self.y = torch.randint(0, args.num_classes, (batch,), generator=g).to(dev)

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


def build_runners(args: argparse.Namespace, names: list[str], batch: int) -> list[Runner]:
    runners = []
    for name in names:
        torch.manual_seed(0)
        if name == "official":
            model = official_model(args.official, args.arch, args.segments, args.num_classes)
            runners.append(Runner(RELEASED, model, True, args, batch))
        else:
            model = build_model(args.arch, args.num_classes, args.segments, name, width=args.width)
            runners.append(Runner(f"{name.upper()} (ours)", model, False, args, batch))
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
    torch.set_num_threads(args.threads[0])
    runner = build_runners(args, [name], args.batch[0])[0]
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


def time_setting(args: argparse.Namespace, runners: list[Runner], threads: int) -> TimingResult:
    """One protocol run: every model's forward and fwd+bwd, interleaved, at ``threads`` intra-op threads."""
    torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    cases = []
    for r in runners:
        cases += [Case(f"{r.name} {FORWARD}", r.forward), Case(f"{r.name} {STEP}", r.train_step)]
    return run_protocol(cases, Protocol(repeats=args.repeats, warmup=1, sync=sync))


def report(result: TimingResult, names: list[str], batch: int, label: str) -> dict[str, float]:
    """Print the setting's tables (both clocks); returns its ratios for the JSON report."""
    ratios: dict[str, float] = {}
    for clock in ("cpu", "wall"):
        tag = "[process CPU time]" if clock == "cpu" else "[wall-clock]"
        print(
            f"\n{tag} {'model':20} {'forward ms/clip':>26} {'/TSN':>17} {'fwd+bwd ms/clip':>26} {'/TSN':>17}"
        )
        for name in names:
            cells = []
            for kind in (FORWARD, STEP):
                case = f"{name} {kind}"
                ratio = result.ratio(case, f"{TSN} {kind}", clock)
                ratios[f"{label} {name}/{TSN} {kind} {clock}"] = ratio.of_medians
                cells += [f"{format_ms(result.spread(case, clock), batch):>26}", f"{format_ratio(ratio):>17}"]
            print(f"{tag} {name:20} {' '.join(cells)}")
        if RELEASED in names:
            parts = []
            for kind in (FORWARD, STEP):
                ratio = result.ratio(f"{TDN} {kind}", f"{RELEASED} {kind}", clock)
                ratios[f"{label} {TDN}/{RELEASED} {kind} {clock}"] = ratio.of_medians
                parts.append(f"{kind} {format_ratio(ratio)}")
            print(f"{tag} ours / released: {', '.join(parts)}")
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--arch", default="resnet50", choices=["resnet18", "resnet34", "resnet50", "resnet101"]
    )
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="one protocol run per batch size")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--num-classes", type=int, default=174)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (>= 5)")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1],
        help="intra-op threads; one run per value (1: CPU time = work)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--official", help="path of a copy of github MCG-NJU/TDN (the folder holding ops/)")
    parser.add_argument("--no-memory", action="store_true", help="skip the training-step memory measurement")
    parser.add_argument(
        "--json", type=Path, help="write every timing and ratio here (benchmarks/timing.py compare)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be >= 5 (medians of fewer runs are noise)")
    if args.official and args.arch not in ("resnet50", "resnet101"):
        parser.error("the released code builds resnet50/resnet101 only")
    if args.official and args.width != 1.0:
        parser.error("the released code has no width multiplier")

    names = ["tsn", "tdn"] + (["official"] if args.official else [])
    print(
        f"# {args.arch} {args.segments} segments, {args.size}x{args.size}, width {args.width}, {args.device} "
        f"{args.dtype}{' channels_last' if args.channels_last else ''}; protocol: benchmarks/timing.py, "
        f"1 warm-up, {args.repeats} interleaved rounds, ms per clip as median [quartiles], "
        f"ratios as ratio of medians [quartiles of per-round ratios]"
    )
    print(
        f"# torch {torch.__version__}, python {platform.python_version()}, {platform.machine()}, "
        f"{platform.processor() or platform.platform()}, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    if args.device.startswith("cuda"):
        print(f"# {torch.cuda.get_device_name()}")
    report_json: dict[str, object] = {
        "argv": sys.argv[1:] if argv is None else argv,
        "settings": {},
        "ratios": {},
    }
    for batch in args.batch:
        runners = build_runners(args, names, batch)
        labels = [r.name for r in runners]
        for threads in args.threads:
            label = f"batch {batch} threads {threads}"
            print(f"\n## {label}")
            result = time_setting(args, runners, threads)
            report_json["settings"][label] = result.to_dict()  # type: ignore[index]
            report_json["ratios"].update(report(result, labels, batch, label))  # type: ignore[attr-defined]
        del runners
    print(f"\n# load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(report_json, indent=1))
    if args.no_memory:
        return 0
    print(f"\n{'model':22} {'step peak MiB':>14} {'/TSN':>6} {'saved activations MiB':>22} {'/TSN':>6}")
    mems = [(n, *measure_memory(args, n)) for n in names]
    p0, a0 = mems[0][1], mems[0][2]
    for n, peak, act in mems:
        label = RELEASED if n == "official" else f"{n.upper()} (ours)"
        print(f"{label:22} {peak / 2**20:14.1f} {peak / p0:6.2f} {act / 2**20:22.1f} {act / a0:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
