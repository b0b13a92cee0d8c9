"""Driver-side costs per video stay constant: each step at 4x N costs under 8x (linear ~4x, quadratic ~16x).

The steps (benchmarks/scale_driver.py) are the real library functions the shard job, the loaders and the
evaluation run on the driver or once per worker over the whole split; benchmarks/scale.py measures the full
jobs on a cluster. Times are CPU time of this thread, best of repeats, so other load on the machine hardly
moves them.
"""

from __future__ import annotations

import pytest

from benchmarks.scale_driver import DriverCase, driver_cases
from benchmarks.scaling import fit_exponent, growth_ratio

LIMIT = 8.0  # at 4x N: linear ~4x, quadratic ~16x; a factor of two of margin either way


def _ratio(case: DriverCase) -> float:
    """The smaller of two measurements: noise inflates one now and then, a quadratic cost inflates both."""
    first = growth_ratio(case.step, case.make_input, case.small, case.large, repeats=3)
    if first < LIMIT:
        return first
    return min(first, growth_ratio(case.step, case.make_input, case.small, case.large, repeats=3))


@pytest.mark.parametrize("case", driver_cases(), ids=lambda c: c.name)
def test_driver_step_grows_linearly(case: DriverCase) -> None:
    ratio = _ratio(case)
    assert ratio < LIMIT, (
        f"{case.name}: {case.large} {case.unit} cost {ratio:.1f}x {case.small} {case.unit} "
        f"(linear ~{case.large / case.small:.0f}x): a per-{case.unit[:-1]} cost grows with N"
    )


def _quadratic_lookup(ids: list[str]) -> list[int]:
    """What the checker must catch: a list scan per item (the old listed_entries did this per shard)."""
    return [next(i for i, other in enumerate(ids) if other == v) for v in ids]


def test_checker_catches_a_quadratic_step() -> None:
    case = DriverCase("quadratic", "videos", lambda n: [f"clip_{i:07d}" for i in range(n)], _quadratic_lookup)
    assert _ratio(case) > LIMIT


def test_fit_exponent() -> None:
    assert fit_exponent([1000, 4000, 16000], [2.0, 8.0, 32.0]) == pytest.approx(1.0)
    assert fit_exponent([1000, 4000, 16000], [1.0, 16.0, 256.0]) == pytest.approx(2.0)
    assert fit_exponent([1000, 4000, 16000], [5.0, 5.0, 5.0]) == pytest.approx(0.0)


def test_evaluation_scores_are_summed_batch_by_batch_in_memory_of_the_videos() -> None:
    """score_shards adds each batch to a ScoreAccumulator: memory ~ videos x classes, not views x classes
    (it used to keep every view's softmax row to the end: ~3 GB at 16,000 videos x 30 views x 400 classes)."""
    import tracemalloc

    import numpy as np

    from tdn.evaluation.metrics import ScoreAccumulator, partial_sums

    videos, views, classes, per_batch = 300, 30, 400, 8
    block = np.random.default_rng(0).random((per_batch * views, classes), dtype=np.float32)
    batches = []
    for first in range(0, videos, per_batch):
        n = min(per_batch, videos - first)
        ids = [f"v{v:04d}" for v in range(first, first + n) for _ in range(views)]
        batches.append(
            (
                ids,
                [i % 10 for i in range(n * views)],
                [(i // 10) % 3 for i in range(n * views)],
                [int(i[1:]) % classes for i in ids],
                block[: n * views],
            )
        )
    tracemalloc.start()
    acc = ScoreAccumulator()
    for batch in batches:
        acc.add(*batch)
    summed = acc.result()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    all_views = videos * views * classes * 4  # float32 rows of every view: 14.4 MB
    assert peak < all_views / 4, f"peak {peak / 2**20:.1f} MiB"
    whole = partial_sums(
        *(sum((list(b[k]) for b in batches), []) for k in range(4)), np.concatenate([b[4] for b in batches])
    )
    assert summed.video_ids == whole.video_ids and summed.view_keys == whole.view_keys
    np.testing.assert_allclose(summed.sums, whole.sums)
    np.testing.assert_array_equal(summed.labels, whole.labels)
