"""One timing protocol for model benchmarks, so that anyone re-running a command gets comparable numbers.

    cases = [Case("TSN forward", tsn_fwd), Case("TDN forward", tdn_fwd)]
    result = run_protocol(cases, Protocol(repeats=7, warmup=1))
    result.spread("TDN forward", "cpu")                    -> Spread: median, quartiles, min, max
    result.ratio("TDN forward", "TSN forward", "cpu")      -> Ratio: of the medians + per-round spread

The protocol (every model timing in BENCHMARKS.md follows it):
  1. one process; every case is built before any timing starts;
  2. warm-up: each case runs ``warmup`` times, in order (allocator, oneDNN primitive caches, lazy init);
  3. ``repeats`` rounds; each round runs every case once, always in the same order (A, B, C, A, B, C, ...),
     so a change of machine load between rounds hits every case of the round alike;
  4. each call is timed by the wall clock (``time.perf_counter``) and by the process CPU time
     (``time.process_time``: user + system time of all threads of this process), with ``sync`` (a device
     synchronisation, e.g. ``torch.cuda.synchronize``) before and after the call;
  5. per case: median, quartiles (IQR) and min/max over the rounds; per pair of cases: the ratio of the
     medians (the headline figure) and the quartiles of the per-round ratios, whose two calls ran one
     right after the other.

On a shared machine the CPU time of a single-threaded run measures the work itself; the wall clock adds
the time spent waiting for a core. Two runs of one command agree when every ratio of one is within
``tolerance`` of the other's: ``python -m benchmarks.timing compare a.json b.json`` checks that (exit 1 if
not) for the ``--json`` files that ``benchmarks/model_step.py`` writes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Clock = Literal["wall", "cpu"]
CLOCKS: tuple[Clock, Clock] = ("wall", "cpu")


@dataclass(frozen=True)
class Case:
    """One thing to time: ``fn()`` runs it once (the protocol adds no arguments)."""

    name: str
    fn: Callable[[], object]


@dataclass(frozen=True)
class Protocol:
    repeats: int = 7  # interleaved rounds (>= 5: medians of fewer runs are noise)
    warmup: int = 1  # untimed calls of each case before the first round
    sync: Callable[[], None] | None = None  # device synchronisation around each timed call

    def __post_init__(self) -> None:
        if self.repeats < 5:
            raise ValueError(f"repeats must be >= 5 (medians of fewer runs are noise), got {self.repeats}")
        if self.warmup < 1:
            raise ValueError(f"warmup must be >= 1, got {self.warmup}")


@dataclass(frozen=True)
class Spread:
    """Median, quartiles and extremes of a list of numbers."""

    median: float
    q1: float
    q3: float
    lo: float
    hi: float

    @staticmethod
    def of(values: Sequence[float]) -> Spread:
        q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return Spread(med, q1, q3, min(values), max(values))


@dataclass(frozen=True)
class Ratio:
    of_medians: float  # median(a) / median(b)
    per_round: Spread  # a_i / b_i, round by round


@dataclass
class TimingResult:
    """Seconds per call, per case and clock, round by round (``times[case][clock][round]``)."""

    cases: list[str]
    times: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def spread(self, case: str, clock: Clock) -> Spread:
        return Spread.of(self.times[case][clock])

    def ratio(self, case: str, base: str, clock: Clock) -> Ratio:
        a, b = self.times[case][clock], self.times[base][clock]
        rounds = [x / y for x, y in zip(a, b)]
        return Ratio(statistics.median(a) / statistics.median(b), Spread.of(rounds))

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict) -> TimingResult:
        return TimingResult(cases=list(data["cases"]), times=data["times"])


def run_protocol(cases: Sequence[Case], protocol: Protocol) -> TimingResult:
    """Time every case under the protocol of the module docstring."""
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise ValueError(f"case names must be unique, got {names}")
    sync = protocol.sync or (lambda: None)
    for _ in range(protocol.warmup):
        for case in cases:
            case.fn()
    result = TimingResult(names, {n: {clock: [] for clock in CLOCKS} for n in names})
    for _ in range(protocol.repeats):
        for case in cases:
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            case.fn()
            sync()
            result.times[case.name]["wall"].append(time.perf_counter() - t0)
            result.times[case.name]["cpu"].append(time.process_time() - c0)
    return result


def format_ratio(r: Ratio) -> str:
    """'1.23 [1.21-1.25]': ratio of medians [per-round quartiles]."""
    return f"{r.of_medians:.2f} [{r.per_round.q1:.2f}-{r.per_round.q3:.2f}]"


def format_ms(s: Spread, per: int = 1) -> str:
    """'583.4 [580.1-590.2]': median ms [quartiles], divided by ``per`` (ms per clip for a batch)."""
    k = 1000.0 / per
    return f"{s.median * k:.1f} [{s.q1 * k:.1f}-{s.q3 * k:.1f}]"


@dataclass(frozen=True)
class Agreement:
    key: str  # "<run label> <case>/<base> <clock>"
    first: float
    second: float

    @property
    def relative(self) -> float:
        return abs(self.first - self.second) / self.second


def compare_runs(first: dict, second: dict, pairs_key: str = "ratios") -> list[Agreement]:
    """Every ratio both JSON reports (as ``model_step.py --json`` writes them) hold, side by side."""
    out = []
    for key, value in first[pairs_key].items():
        if key in second[pairs_key]:
            out.append(Agreement(key, float(value), float(second[pairs_key][key])))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare the ratios of two runs of one timing command.")
    sub = parser.add_subparsers(dest="command", required=True)
    cmp_ = sub.add_parser("compare", help="exit 1 unless every common ratio agrees within --tolerance")
    cmp_.add_argument("first", type=Path)
    cmp_.add_argument("second", type=Path)
    cmp_.add_argument("--tolerance", type=float, default=0.05)
    cmp_.add_argument("--clock", choices=CLOCKS, help="only this clock's ratios")
    args = parser.parse_args(argv)
    rows = compare_runs(json.loads(args.first.read_text()), json.loads(args.second.read_text()))
    if args.clock:
        rows = [r for r in rows if r.key.endswith(" " + args.clock)]
    if not rows:
        print("timing: error: the two files have no ratio in common", file=sys.stderr)
        return 2
    worst = max(r.relative for r in rows)
    for r in rows:
        flag = "" if r.relative <= args.tolerance else "  <- differs"
        print(f"{r.key:60} {r.first:6.3f} {r.second:6.3f} {100 * r.relative:5.1f} %{flag}")
    print(f"largest difference {100 * worst:.1f} % (tolerance {100 * args.tolerance:.0f} %)")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    raise SystemExit(main())
