"""Where TDN's time over TSN goes: per-module and per-op CPU time, forward and backward, beside TSN.

    python -m benchmarks.op_profile                       # R50, 8 segments, 224^2, batch 1, 1 thread
    python -m benchmarks.op_profile --batch 8 --mode step --rows 30
    python -m benchmarks.op_profile --torch-profiler      # torch.profiler's own table of the same call

Every ATen op the model runs is timed by the CPU time of the calling thread (``time.thread_time_ns``
around the op, in a ``TorchDispatchMode``); with ``--threads`` > 1 by the process's CPU time (all threads;
run it with ``OMP_WAIT_POLICY=PASSIVE`` so that threads waiting at a barrier sleep instead of spinning).
With one intra-op thread (the default) that is the op's own work, whatever the machine's load: the wall clock that torch.profiler reports also counts time spent waiting
for a core, which on the shared 2-core machine is most of it. Each op is attributed to a region:
``S-TDM stem``, ``S-TDM layer1`` (the stream's ResNet stages), ``S-TDM fusion``, ``L-TDM``,
``temporal conv`` or ``ResNet`` (everything else, i.e. what TSN also runs). Forward ops by the region whose
call is running; backward ops by the region whose forward created the autograd node being run
(``torch._C._current_autograd_node``), so "L-TDM backward" is the backward of what the L-TDM's forward
built. ``--mode forward`` = inference (eval, no grad); ``step`` = train-mode forward + backward, whose
backward rows are listed separately. Timings are summed over ``--repeats`` calls after one warm-up and
divided by the repeats; the dispatch-mode bookkeeping adds a few microseconds per op, to both models.
"""

from __future__ import annotations

import argparse
import collections
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from tdn.model import networks
from tdn.model.networks import TDNNet, build_model
from tdn.model.temporal_modules import LongTermTDM, TemporalConv

RESNET = "ResNet"


class RegionProfiler(TorchDispatchMode):
    """Thread CPU time per (phase, region, op); regions are pushed by ``region`` around forward calls."""

    def __init__(self, clock: Callable[[], int] = time.thread_time_ns) -> None:
        super().__init__()
        self.clock = clock
        self.ns: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.calls: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.stack: list[str] = []
        self.node_region: dict[int, str] = {}
        self.quiet = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if self.quiet:
            return func(*args, **(kwargs or {}))
        node = torch._C._current_autograd_node()
        t0 = self.clock()
        out = func(*args, **(kwargs or {}))
        spent = self.clock() - t0
        if node is None:
            key = ("forward", self.stack[-1] if self.stack else RESNET, str(func.overloadpacket))
        else:
            region = self.node_region.get(node._sequence_nr(), RESNET)
            key = ("backward", region, str(func.overloadpacket))
        self.ns[key] += spent
        self.calls[key] += 1
        return out

    def _sequence_now(self) -> int:
        """The autograd sequence number the next node will get (a tiny probe node, not timed)."""
        self.quiet = True
        try:
            with torch.enable_grad():
                probe = torch.zeros((), requires_grad=True) * 1.0
            return probe.grad_fn._sequence_nr() + 1  # type: ignore[union-attr]
        finally:
            self.quiet = False

    def _label(self, outputs: object, start: int, region: str) -> None:
        """Give ``region`` to every autograd node created since sequence number ``start`` that leads to
        ``outputs`` and has no region yet (inner regions finish, and label, first)."""
        todo = [t.grad_fn for t in _tensors(outputs) if t.grad_fn is not None]
        seen: set[int] = set()
        while todo:
            node = todo.pop()
            seq = node._sequence_nr()
            if seq < start or seq in seen or seq >= 2**63:  # older, visited, or AccumulateGrad
                continue
            seen.add(seq)
            self.node_region.setdefault(seq, region)
            todo.extend(n for n, _ in node.next_functions if n is not None)

    @contextmanager
    def region(self, name: str) -> Iterator[Callable[[object], None]]:
        """with profiler.region(name) as done: ...; done(outputs)  (labels the autograd nodes built)."""
        start = self._sequence_now() if torch.is_grad_enabled() else 0
        self.stack.append(name)
        try:
            yield lambda outputs: self._label(outputs, start, name) if torch.is_grad_enabled() else None
        finally:
            self.stack.pop()


def _tensors(obj: object) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _tensors(o)]
    return []


def instrument(model: TDNNet, prof: RegionProfiler) -> Callable[[], None]:
    """Route the model's temporal modules through ``prof.region``; returns the undo function."""
    undo: list[Callable[[], None]] = []

    def wrap_module(module: torch.nn.Module, name: str) -> None:
        original = module.forward

        def forward(*args, **kwargs):  # noqa: ANN002, ANN003
            with prof.region(name) as done:
                out = original(*args, **kwargs)
                done(out)
                return out

        module.forward = forward  # type: ignore[method-assign]
        undo.append(lambda: delattr(module, "forward"))

    for module in model.modules():
        if isinstance(module, LongTermTDM):
            wrap_module(module, "L-TDM")
        elif isinstance(module, TemporalConv):
            wrap_module(module, "temporal conv")
    if model.stdm is not None:
        for layer in model.stdm.layers:
            wrap_module(layer, "S-TDM layer1..")
        stem = model.stdm.stem

        def stem_wrapper(frames: torch.Tensor) -> torch.Tensor:
            with prof.region("S-TDM stem") as done:
                out = stem(frames)
                done(out)
                return out

        model.stdm.stem = stem_wrapper  # type: ignore[method-assign]
        undo.append(lambda: delattr(model.stdm, "stem"))
    fuse = networks.fuse

    def fuse_wrapper(*args, **kwargs):  # noqa: ANN002, ANN003
        with prof.region("S-TDM fusion") as done:
            out = fuse(*args, **kwargs)
            done(out)
            return out

    networks.fuse = fuse_wrapper  # type: ignore[assignment]
    undo.append(lambda: setattr(networks, "fuse", fuse))
    return lambda: [u() for u in reversed(undo)] and None


def make_call(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mode: str) -> Callable[[], None]:
    def forward() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    def step() -> None:
        model.train()
        F.cross_entropy(model(x), y).backward()
        model.zero_grad(set_to_none=True)

    return forward if mode == "forward" else step


def profile(
    models: list[TDNNet], calls: list[Callable[[], None]], repeats: int, clock: Callable[[], int]
) -> list[RegionProfiler]:
    """Profile every model's call, interleaved (A, B, A, B, ...) after one warm-up each, like the timing
    protocol, so that load drift hits both alike."""
    profs = [RegionProfiler(clock) for _ in models]
    undos = [instrument(m, p) for m, p in zip(models, profs)]
    try:
        for call in calls:
            call()  # warm-up
        for _ in range(repeats):
            for prof, call in zip(profs, calls):
                prof.node_region.clear()
                with prof:
                    call()
    finally:
        for undo in undos:
            undo()
    return profs


def print_tables(tsn: RegionProfiler, tdn: RegionProfiler, repeats: int, rows: int, batch: int) -> None:
    """The region table (forward, backward ms per clip; share of TDN's excess over TSN) and the top ops."""

    def ms(ns: float) -> float:
        return ns / repeats / 1e6 / batch

    def total(prof: RegionProfiler, region: str | None, phase: str) -> float:
        return ms(sum(v for k, v in prof.ns.items() if k[0] == phase and region in (None, k[1])))

    phases = ("forward", "backward")
    tsn_all, tdn_all = ms(sum(tsn.ns.values())), ms(sum(tdn.ns.values()))
    excess = tdn_all - tsn_all
    print(f"\nCPU ms per clip: TSN {tsn_all:.1f}, TDN {tdn_all:.1f}, TDN/TSN {tdn_all / tsn_all:.3f}")
    print(f"\n{'region':16} {'forward ms':>11} {'backward ms':>12} {'/ TSN total':>12} {'of TDN-TSN':>11}")
    names = [RESNET] + sorted({k[1] for k in tdn.ns} - {RESNET})
    for region in names:
        f_, b_ = (total(tdn, region, ph) for ph in phases)
        extra = f_ + b_ - (tsn_all if region == RESNET else 0.0)
        label = "ResNet (-TSN)" if region == RESNET else region
        print(f"{label:16} {f_:11.1f} {b_:12.1f} {(f_ + b_) / tsn_all:12.3f} {100 * extra / excess:10.0f}%")
    f_, b_ = (total(tsn, None, ph) for ph in phases)
    print(f"{'TSN':16} {f_:11.1f} {b_:12.1f} {1.0:12.3f}")
    print(f"\n{'region':16} {'phase':9} {'op':34} {'calls':>6} {'ms':>8}")
    temporal = [(k, v) for k, v in tdn.ns.items() if k[1] != RESNET]
    for (phase, region, op), ns in sorted(temporal, key=lambda kv: -kv[1])[:rows]:
        calls = tdn.calls[(phase, region, op)] // repeats
        print(f"{region:16} {phase:9} {op:34} {calls:6d} {ms(ns):8.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--arch", default="resnet50", choices=["resnet18", "resnet34", "resnet50", "resnet101"]
    )
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mode", choices=["forward", "step"], default="forward")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=25, help="op rows of the temporal modules to list")
    parser.add_argument(
        "--torch-profiler", action="store_true", help="also print torch.profiler's table (TDN)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.segments, 5, 3, args.size, args.size, generator=g)
    y = torch.randint(0, 174, (args.batch,), generator=g)
    models = {}
    for variant in ("tsn", "tdn"):
        torch.manual_seed(0)
        models[variant] = build_model(args.arch, 174, args.segments, variant, width=args.width)
    print(
        f"# {args.arch} {args.segments} segments {args.size}^2, batch {args.batch}, {args.threads} thread(s), "
        f"{args.mode}, {'thread' if args.threads == 1 else 'process'} CPU time per op summed over "
        f"{args.repeats} calls; torch {torch.__version__}"
    )
    calls = [make_call(m, x, y, args.mode) for m in models.values()]
    clock = time.thread_time_ns if args.threads == 1 else time.process_time_ns
    tsn, tdn = profile(list(models.values()), calls, args.repeats, clock)
    print_tables(tsn, tdn, args.repeats, args.rows, args.batch)
    if args.torch_profiler:
        call = make_call(models["tdn"], x, y, args.mode)
        call()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as tp:
            call()
        print(tp.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
