"""CPU time and memory of the benchmark's own process and its descendants (benchmarks/scale_jobs.py)."""

from __future__ import annotations

import resource


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def descendants_cpu_s() -> float:
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


class RssSampler:
    """The largest RSS of this process while the job runs, sampled every 50 ms (ru_maxrss is the peak since
    the process started, which the Ray cluster's start-up sets)."""

    def __init__(self) -> None:
        import threading

        import psutil

        self.peak, self._process, self._done = 0, psutil.Process(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.peak / 2**20
