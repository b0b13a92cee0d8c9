"""Scaling exponents: fit k in cost ~ N^k, and a robust growth check for the test suite.

    fit_exponent([1000, 4000, 16000], [2.1, 8.5, 35.0]) -> 1.01   (least squares on log-log)
    growth_ratio(plan, make_input, 200, 800) -> 4.1               (best-of-repeats time at 4x N over 1x N)

``growth_ratio`` times ``fn(make_input(n))`` at both sizes, interleaved, ``repeats`` times each with the garbage
collector off, and divides the best (least disturbed) times: a linear cost gives about 4x at 4x N, a quadratic
one 16x, so a bound of 8x separates them with a factor-of-two margin either way on a noisy machine.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def fit_exponent(sizes: Sequence[float], costs: Sequence[float]) -> float:
    """Least-squares slope of log(cost) on log(size): k in cost ~ N^k (NaN with fewer than 2 positive points)."""
    points = [(math.log(n), math.log(c)) for n, c in zip(sizes, costs) if n > 0 and c > 0]
    if len(points) < 2:
        return math.nan
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return math.nan
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def best_time(fn: Callable[[T], object], arg: T) -> float:
    """CPU seconds of this thread for one call, with the garbage collector off (a collection mid-call is noise,
    not cost). CPU time of the thread, not wall time: on a machine shared with other jobs (load averages of
    100 on 2 cores were seen while writing this) wall time mostly measures them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.thread_time()
        fn(arg)
        return time.thread_time() - start
    finally:
        if enabled:
            gc.enable()


def growth_ratio(
    fn: Callable[[T], object], make_input: Callable[[int], T], small: int, large: int, repeats: int = 5
) -> float:
    """best time of ``fn`` at ``large`` / best time at ``small`` (inputs built outside the timing)."""
    inputs = (make_input(small), make_input(large))
    fn(inputs[0])  # warm-up: imports, caches
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for k in (0, 1):
            times[k].append(best_time(fn, inputs[k]))
    return min(times[1]) / max(min(times[0]), 1e-9)
