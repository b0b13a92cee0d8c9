"""Video-level aggregation and metrics against a hand-computed example (views split across workers)."""

from __future__ import annotations

import numpy as np
import pytest

from tdn.evaluation.metrics import (
    PartialScores,
    ScoreAccumulator,
    VideoScores,
    aggregate_views,
    confusion_matrix,
    mean_class_accuracy,
    merge_partials,
    partial_sums,
    per_class_accuracy,
    softmax,
    summary,
    topk_accuracy,
)

# 3 videos x (2 clips x 2 crops) of 3 classes. Video "a" (label 0) has two views on each worker.
# By hand: a -> mean [0.35, 0.425, 0.225] (predicts 1, wrong; worker 1 alone would give a tie -> class 0),
#          b -> mean [0.2, 0.35, 0.45] (predicts 2, right; worker 2 alone would predict 1),
#          c -> [0.1, 0.7, 0.2] (predicts 1, right).
WORKER1 = [
    ("a", 0, 0, 0, [0.6, 0.3, 0.1]),
    ("a", 0, 1, 0, [0.2, 0.5, 0.3]),
    ("b", 0, 0, 2, [0.2, 0.2, 0.6]),
    ("c", 0, 0, 1, [0.1, 0.7, 0.2]),
    ("c", 0, 1, 1, [0.1, 0.7, 0.2]),
    ("c", 1, 0, 1, [0.1, 0.7, 0.2]),
    ("c", 1, 1, 1, [0.1, 0.7, 0.2]),
]
WORKER2 = [
    ("b", 0, 1, 2, [0.3, 0.4, 0.3]),
    ("a", 1, 0, 0, [0.1, 0.8, 0.1]),
    ("b", 1, 0, 2, [0.1, 0.6, 0.3]),
    ("a", 1, 1, 0, [0.5, 0.1, 0.4]),
    ("b", 1, 1, 2, [0.2, 0.2, 0.6]),
]


def _partial(rows):
    ids, views, crops, labels, probs = zip(*rows)
    return partial_sums(list(ids), list(views), list(crops), list(labels), np.array(probs))


def test_views_split_across_workers_match_hand_computation():
    video = merge_partials([_partial(WORKER1), _partial(WORKER2)], expected_views=4)
    assert list(video.video_ids) == ["a", "b", "c"]
    assert list(video.labels) == [0, 2, 1]
    assert list(video.num_views) == [4, 4, 4]
    np.testing.assert_allclose(video.scores[0], [0.35, 0.425, 0.225])
    np.testing.assert_allclose(video.scores[1], [0.2, 0.35, 0.45])
    np.testing.assert_allclose(video.scores[2], [0.1, 0.7, 0.2])
    assert topk_accuracy(video.scores, video.labels, 1) == pytest.approx(2 / 3)
    assert topk_accuracy(video.scores, video.labels, 2) == pytest.approx(1.0)
    assert topk_accuracy(video.scores, video.labels, 5) == pytest.approx(1.0)  # k clipped to C
    np.testing.assert_allclose(per_class_accuracy(video.scores, video.labels), [0.0, 1.0, 1.0])
    assert mean_class_accuracy(video.scores, video.labels) == pytest.approx(2 / 3)
    np.testing.assert_array_equal(
        confusion_matrix(video.scores, video.labels), [[0, 1, 0], [0, 1, 0], [0, 0, 1]]
    )
    # the order of workers does not matter, and one-shot aggregation agrees
    again = merge_partials([_partial(WORKER2), _partial(WORKER1)])
    np.testing.assert_allclose(again.scores, video.scores)
    ids, views, crops, labels, probs = zip(*(WORKER2 + WORKER1))
    once = aggregate_views(ids, views, crops, labels, np.array(probs))
    np.testing.assert_allclose(once.scores, video.scores)


def test_missing_or_duplicated_views_are_errors():
    with pytest.raises(ValueError, match="do not have 4 views"):
        merge_partials([_partial(WORKER1)], expected_views=4)  # worker 2's shard lost
    with pytest.raises(ValueError, match="scored twice"):
        merge_partials([_partial(WORKER1), _partial(WORKER1[:1])])
    with pytest.raises(ValueError, match="different labels"):
        _partial([("a", 0, 0, 0, [1.0, 0.0]), ("a", 1, 0, 1, [1.0, 0.0])])
    with pytest.raises(ValueError, match="no views"):
        merge_partials([])


def test_unlabelled_videos_are_left_out_and_absent_classes_are_nan():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.3, 0.7, 0.0]])
    labels = np.array([0, -1, 0])
    assert topk_accuracy(scores, labels, 1) == pytest.approx(0.5)
    acc = per_class_accuracy(scores, labels)
    assert acc[0] == pytest.approx(0.5) and np.isnan(acc[1]) and np.isnan(acc[2])
    assert mean_class_accuracy(scores, labels) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no labelled"):
        topk_accuracy(scores, np.array([-1, -1, -1]), 1)
    with pytest.raises(ValueError, match="out of range"):
        topk_accuracy(scores, np.array([0, 3, 0]), 1)


def test_softmax_and_summary():
    p = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    np.testing.assert_allclose(p, [[0.5, 0.5], [0.25, 0.75]])
    video = aggregate_views(["x", "y"], [0, 0], [0, 0], [1, 0], p)
    s = summary(video)
    assert s["top1"] == pytest.approx(0.0)  # x: tie -> class 0 (label 1); y: predicts 1 (label 0)
    assert s["num_labelled"] == 2


def test_topk_and_summary_agree_with_a_stable_sort_on_ties():
    """Ranks are counted, not sorted: the same hits as a stable argsort of the negated scores, ties included."""
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(500, 7)).astype(np.float64)  # many ties
    labels = rng.integers(-1, 7, size=500)
    keep = labels >= 0
    order = np.argsort(-scores[keep], axis=1, kind="stable")
    for k in (1, 2, 5, 9):
        by_sort = float((order[:, :k] == labels[keep][:, None]).any(axis=1).mean())
        assert topk_accuracy(scores, labels, k) == by_sort
    video = VideoScores(np.arange(500).astype(str), labels, scores, np.ones(500, dtype=np.int64))
    s = summary(video)
    assert s["top1"] == topk_accuracy(scores, labels, 1) and s["top5"] == topk_accuracy(scores, labels, 5)
    assert s["mean_class_acc"] == mean_class_accuracy(scores, labels)  # argmax-based: the same ties rule


def test_accumulator_results_are_snapshots_and_parts_may_repeat_videos():
    acc = ScoreAccumulator()
    acc.add(["a", "a"], [0, 1], [0, 0], [1, 1], np.array([[0.2, 0.8], [0.4, 0.6]], dtype=np.float32))
    first = acc.result()
    acc.add(["b", "a"], [0, 2], [0, 0], [0, 1], np.array([[1.0, 0.0], [0.5, 0.5]]))
    second = acc.result()
    np.testing.assert_allclose(first.sums, [[0.6, 1.4]])  # not changed by the later add
    assert first.view_keys == [[(0, 0), (1, 0)]]
    np.testing.assert_allclose(second.sums, [[1.1, 1.9], [1.0, 0.0]])
    assert second.video_ids == ["a", "b"] and second.view_keys == [[(0, 0), (1, 0), (2, 0)], [(0, 0)]]
    # a part listing a video twice (not a ScoreAccumulator's) is summed, its keys checked like any other
    doubled = PartialScores.from_view_keys(
        ["c", "c"], np.array([2, 2]), np.array([[1.0, 0.0], [0.0, 1.0]]), [[(0, 0)], [(1, 0)]]
    )
    video = merge_partials([second, doubled])
    assert list(video.video_ids) == ["a", "b", "c"] and list(video.num_views) == [3, 1, 2]
    np.testing.assert_allclose(video.scores[2], [0.5, 0.5])
    with pytest.raises(ValueError, match="'c': view 0 crop 0 was scored twice"):
        merge_partials(
            [doubled, PartialScores.from_view_keys(["c"], np.array([2]), np.ones((1, 2)), [[(0, 0)]])]
        )
    with pytest.raises(ValueError, match="different labels"):
        merge_partials(
            [doubled, PartialScores.from_view_keys(["c"], np.array([1]), np.ones((1, 2)), [[(2, 0)]])]
        )
    # sparse view numbers take the sorting check instead of the dense count: same answer
    sparse = PartialScores.from_view_keys(["x"], np.array([0]), np.ones((1, 2)), [[(10**6, 1), (10**6, 1)]])
    with pytest.raises(ValueError, match="'x': view 1000000 crop 1 was scored twice"):
        merge_partials([sparse])
