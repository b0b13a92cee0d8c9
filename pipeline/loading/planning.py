"""Which samples each rank and loader worker reads in an epoch: pure arithmetic on the split index.

Epochs and ranks. Every (rank, loader worker) pair reads a disjoint, contiguous slice of one global order
of the videos (shards permuted per epoch with ``(seed, epoch)``; inside a shard the order written), so each
video is seen exactly once per epoch, with one of its pre-sampled views: ``(epoch + hash(video_id)) %
num_views``. Every rank runs exactly ``train_steps_per_epoch`` steps of B samples (DDP needs equal step
counts); the few missing samples of the last batches (at most B*world - 1 in all) are repeats drawn from the
same slice. This is what WebDataset's ``resampled=True`` + ``with_epoch`` gives for equal steps, without its
sampling with replacement (which sees about 63% of the videos per epoch). Slices only split shards at their
ends, so a rank reads at most two shards it does not finish.

The split relies on the index's per-shard ``videos`` count and on all views of a video sitting in the same
shard (the shard job writes a video's views together). If a shard holds more selected samples than its count,
the extra ones go to the slice owning the shard's end; missing ones are replaced by repeats.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.loading.config import LoaderConfig
from pipeline.shards.contract import ShardEntry, ShardIndex


def train_steps_per_epoch(index: ShardIndex, cfg: LoaderConfig, world_size: int) -> int:
    """ceil(num_videos / (batch_size * world_size)): every rank runs this many steps per epoch."""
    return max(1, math.ceil(index.num_videos / (cfg.batch_size * world_size)))


def selected_view(video_id: str, epoch: int, num_views: int) -> int:
    """The view of ``video_id`` used in ``epoch``: views rotate with the epoch from a per-video start, so
    every view is used once per ``num_views`` epochs and a batch mixes views."""
    start = int.from_bytes(hashlib.sha1(video_id.encode("utf-8")).digest()[:8], "little")
    return (epoch + start) % max(1, num_views)


@dataclass(frozen=True)
class ShardSlice:
    """Selected samples ``start <= ordinal < stop`` of one shard (ordinal counts only the samples of the
    epoch's view, in tar order). ``open_end``: also take ordinals >= stop (this slice owns the shard's end)."""

    uri: str
    start: int
    stop: int
    open_end: bool
    entry: ShardEntry | None = (
        None  # the shard's index entry: its size and sha256 are checked when read to the end
    )


@dataclass(frozen=True)
class WorkerPlan:
    slices: list[ShardSlice]  # the worker's share of the epoch, in reading order
    fallback: list[ShardSlice]  # where repeats come from when ``slices`` is empty
    num_batches: int


def epoch_plan(
    index: ShardIndex,
    uris: Sequence[str],
    cfg: LoaderConfig,
    rank: int,
    world_size: int,
    num_workers: int,
    epoch: int,
    seed: int,
) -> list[WorkerPlan]:
    """What each loader worker of ``rank`` reads in ``epoch`` (the same computation on every rank)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    counts = [s.videos for s in index.shards]
    order = np.random.default_rng([seed, epoch, 0x5EED]).permutation(len(counts))
    starts = np.concatenate([[0], np.cumsum([counts[i] for i in order])]).astype(int)
    total = int(starts[-1])
    steps = train_steps_per_epoch(index, cfg, world_size)
    workers = max(1, num_workers)
    batches = [steps // workers + (w < steps % workers) for w in range(workers)]

    def slices_of(lo: int, hi: int) -> list[ShardSlice]:
        out = []
        for pos, i in enumerate(order):
            a, b = int(starts[pos]), int(starts[pos + 1])
            if b > lo and a < hi and b > a:
                stop = min(hi, b) - a
                out.append(
                    ShardSlice(uris[i], max(lo, a) - a, stop, open_end=stop == b - a, entry=index.shards[i])
                )
        return out

    rank_lo, rank_hi = rank * total // world_size, (rank + 1) * total // world_size
    rank_slices = slices_of(rank_lo, rank_hi) or slices_of(0, total)
    # Split the rank's range over its workers in proportion to their batch quotas, so no worker is given
    # more videos than it will yield (n <= quota_total implies each share <= its quota).
    quota_total = steps * cfg.batch_size
    cum = np.concatenate([[0], np.cumsum(batches)]) * cfg.batch_size
    n = rank_hi - rank_lo
    plans = []
    for w in range(workers):
        lo = rank_lo + n * int(cum[w]) // quota_total
        hi = rank_lo + n * int(cum[w + 1]) // quota_total
        plans.append(WorkerPlan(slices_of(lo, hi) if hi > lo else [], rank_slices, batches[w]))
    return plans
