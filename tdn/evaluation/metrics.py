"""Video-level metrics from per-view scores: pure NumPy functions, no I/O.

Evaluation produces one softmax vector per view (clip x crop) of a video. Views of one video may be scored on
different shards, replicas or nodes, so aggregation is by video id, in two associative steps:

    per worker:  partial_sums(video_ids, views, crops, labels, probs (M, C)) -> PartialScores
    driver:      merge_partials([...]) -> VideoScores (V videos, scores (V, C) = mean over that video's views)

``aggregate_views`` does both at once for one array of views. Metrics take VideoScores:

    top-k accuracy, per-class accuracy (C,), mean class accuracy, confusion matrix (C, C) rows = true label.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np


@dataclass
class PartialScores:
    """Sums of softmax scores per video over the views one worker saw.

    video_ids (V,) str, labels (V,) int64, sums (V, C) float64; the (view, crop) pairs summed (to catch a
    view counted twice and to count views per video) as arrays of K entries: key_rows (K,) int64 (index into
    video_ids), key_views (K,), key_crops (K,). ``view_keys`` gives them per video as Python pairs.
    """

    video_ids: list[str]
    labels: np.ndarray
    sums: np.ndarray
    key_rows: np.ndarray
    key_views: np.ndarray
    key_crops: np.ndarray

    @property
    def view_keys(self) -> list[list[tuple[int, int]]]:
        """Per video, its (view, crop) pairs in the order they were added."""
        order = np.argsort(self.key_rows, kind="stable")
        pairs = list(zip(self.key_views[order].tolist(), self.key_crops[order].tolist()))
        ends = np.cumsum(np.bincount(self.key_rows, minlength=len(self.video_ids))).tolist()
        return [pairs[a:b] for a, b in zip([0, *ends[:-1]], ends)]

    @classmethod
    def from_view_keys(
        cls,
        video_ids: list[str],
        labels: np.ndarray,
        sums: np.ndarray,
        view_keys: Sequence[Sequence[tuple[int, int]]],
    ) -> PartialScores:
        """From per-video (view, crop) pairs (e.g. sent as JSON by an evaluation replica)."""
        counts = np.fromiter(map(len, view_keys), dtype=np.int64, count=len(view_keys))
        flat = np.fromiter(chain.from_iterable(chain.from_iterable(view_keys)), dtype=np.int64).reshape(-1, 2)
        rows = np.repeat(np.arange(len(view_keys), dtype=np.int64), counts)
        return cls(video_ids, labels, sums, rows, flat[:, 0].copy(), flat[:, 1].copy())


@dataclass
class VideoScores:
    """Video-level scores: video_ids (V,), labels (V,) int64 (-1 = unlabelled), scores (V, C) float64 (the
    mean of the per-view softmax), num_views (V,) int64."""

    video_ids: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    num_views: np.ndarray

    def __len__(self) -> int:
        return len(self.video_ids)


# Rows of a (V, C) score table processed together where a whole-table pass would leave the CPU cache:
# 256 x 400 classes x 8 bytes = 0.8 MB (the table is 51 MB at 16,000 videos).
_BLOCK_ROWS = 256


class ScoreAccumulator:
    """Per-video sums of softmax scores, added batch by batch: memory (V, C) for V videos, never (M, C) for
    M = 30 V views (16,000 videos x 30 views x 400 classes: every view's float32 row kept to the end, then
    concatenated and made float64, peaked at about 3 GB in one replica; these sums take 51 MB).

    The sums are one contiguous float64 table (rows in order of first appearance, grown by doubling) and a
    batch is added with one grouped NumPy sum; the (view, crop) keys are kept as arrays. Python works per
    video, never per view (the list of one array per video, added view by view, cost 1.5 us per view and grew
    from 85 to 120 us per video between 1,000 and 16,000 videos: BENCHMARKS.md "Scale")."""

    def __init__(self) -> None:
        self._where: dict[str, int] = {}
        self._ids: list[str] = []
        self._labels = np.zeros(0, dtype=np.int64)
        self._sums = np.zeros((0, 0), dtype=np.float64)
        self._keys: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (row, view, crop) per batch
        self._classes: int | None = None
        self._shared = False  # result() handed out a view of the table: copy it before adding again

    def add(
        self,
        video_ids: Sequence[str],
        views: Sequence[int],
        crops: Sequence[int],
        labels: Sequence[int],
        probs: np.ndarray,
    ) -> None:
        """Add M views (probs (M, C)) to their videos' sums."""
        probs = np.asarray(probs)
        if probs.ndim != 2 or len(probs) != len(video_ids):
            raise ValueError(f"probs must be (M, C) with M = {len(video_ids)} views, got {probs.shape}")
        if not (len(views) == len(crops) == len(labels) == len(video_ids)):
            raise ValueError("video_ids, views, crops and labels must have one entry per view")
        if self._classes is not None and probs.shape[1] != self._classes:
            raise ValueError(f"score vectors of different sizes: {self._classes} and {probs.shape[1]}")
        self._classes = probs.shape[1]
        if self._shared:
            self._sums, self._labels, self._shared = self._sums.copy(), self._labels.copy(), False
        label_arr = np.asarray(labels, dtype=np.int64).reshape(-1)
        rows = self._rows_for(video_ids, label_arr)
        order = np.argsort(rows, kind="stable")  # a batch holds its videos' views together: usually sorted
        rows, probs = rows[order], probs[order]
        starts = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1])))
        if len(rows) % len(starts) == 0 and (np.diff(starts) == len(rows) // len(starts)).all():
            # every video with the same number of views (whole videos per batch): a reshape, 2.5x faster
            summed = probs.reshape(len(starts), -1, probs.shape[1]).sum(axis=1, dtype=np.float64)
        else:
            summed = np.add.reduceat(probs, starts, axis=0, dtype=np.float64)
        first, last = int(rows[starts[0]]), int(rows[starts[-1]])
        if last - first == len(starts) - 1:  # consecutive rows (the usual batch): add in place, no copies
            self._sums[first : last + 1] += summed
        else:
            self._sums[rows[starts]] += summed
        view_arr, crop_arr = (np.asarray(a, dtype=np.int64).reshape(-1)[order] for a in (views, crops))
        self._keys.append((rows, view_arr, crop_arr))

    def _rows_for(self, video_ids: Sequence[str], labels: np.ndarray) -> np.ndarray:
        """The row of each view's video (new videos appended, labelled by their first view); labels checked."""
        where, ids = self._where, self._ids
        rows = [where.get(v) for v in video_ids]  # str or numpy str_; others str()'d below
        if None in rows:
            first, new_at = len(ids), []
            for i, j in enumerate(rows):
                if j is None:
                    vid = str(video_ids[i])
                    j = where.get(vid)
                    if j is None:
                        j = where[vid] = len(ids)
                        ids.append(vid)
                        new_at.append(i)
                    rows[i] = j
            self._grow(len(ids))
            self._labels[first : len(ids)] = labels[new_at]
        out = np.asarray(rows, dtype=np.int64)
        _check_labels(self._labels[out], labels, ids, out)
        return out

    def _grow(self, n: int) -> None:
        if n <= len(self._labels):
            return
        capacity = max(n, 2 * len(self._labels), 64)
        sums = np.zeros((capacity, self._classes or 0), dtype=np.float64)
        if len(self._sums):
            sums[: len(self._sums)] = self._sums
        labels = np.zeros(capacity, dtype=np.int64)
        labels[: len(self._labels)] = self._labels
        self._sums, self._labels = sums, labels

    def result(self, num_classes: int = 0) -> PartialScores:
        """The sums so far, in order of first appearance (``num_classes``: the width if nothing was added).
        Its arrays are views of the accumulator's table, not copies (a copy of the whole table is what a cold
        evaluation pays most for: fresh memory); a later ``add`` copies the table first."""
        n = len(self._ids)
        if n == 0:
            width = self._classes if self._classes is not None else num_classes
            empty = np.zeros(0, dtype=np.int64)
            return PartialScores([], empty, np.zeros((0, width)), empty, empty, empty)
        rows, views, crops = (np.concatenate(k) for k in zip(*self._keys))
        self._shared = True
        return PartialScores(list(self._ids), self._labels[:n], self._sums[:n], rows, views, crops)


def _check_labels(have: np.ndarray, got: np.ndarray, ids: Sequence[str], rows: np.ndarray) -> None:
    bad = np.flatnonzero(have != got)
    if bad.size:
        b = int(bad[0])
        raise ValueError(f"video {ids[rows[b]]!r} has views with different labels: {have[b]} and {got[b]}")


def partial_sums(
    video_ids: Sequence[str],
    views: Sequence[int],
    crops: Sequence[int],
    labels: Sequence[int],
    probs: np.ndarray,
) -> PartialScores:
    """Group M views (probs (M, C)) by video id: sums (V, C) in order of first appearance."""
    acc = ScoreAccumulator()
    acc.add(video_ids, views, crops, labels, probs)
    return acc.result(np.shape(probs)[1] if np.ndim(probs) == 2 else 0)


def merge_partials(parts: Iterable[PartialScores], expected_views: int | None = None) -> VideoScores:
    """Combine partial sums from any number of workers; videos are sorted by id for a stable order.

    Raises if a (view, crop) of a video was counted twice, if a video's labels disagree, or, with
    ``expected_views``, if a video has a different number of views (a lost or duplicated shard).

    Rows are placed in sorted order as they arrive (a video's first part is copied into its row, later ones
    added), so the (V, C) table is written once and divided in place: no gather or sort of the table.
    """
    parts = [p for p in parts if p.sums.shape[0] > 0]
    if not parts:
        raise ValueError("no views were scored")
    num_classes = parts[0].sums.shape[1]
    for part in parts:
        if part.sums.shape[1] != num_classes:
            raise ValueError(f"score vectors of different sizes: {num_classes} and {part.sums.shape[1]}")
    names = sorted({v for part in parts for v in part.video_ids})
    where = {v: i for i, v in enumerate(names)}
    sums = np.empty((len(names), num_classes), dtype=np.float64)
    labels = np.full(len(names), _UNSEEN, dtype=np.int64)
    key_rows, key_views, key_crops = [], [], []
    for part in parts:
        rows = np.fromiter(map(where.__getitem__, part.video_ids), dtype=np.int64, count=len(part.video_ids))
        _place(sums, labels, rows, part, names)
        key_rows.append(rows[part.key_rows])
        key_views.append(part.key_views)
        key_crops.append(part.key_crops)
    rows = np.concatenate(key_rows)
    _refuse_views_twice(rows, np.concatenate(key_views), np.concatenate(key_crops), names)
    counts = np.bincount(rows, minlength=len(names))
    if expected_views is not None:
        bad = np.flatnonzero(counts != expected_views)
        if bad.size:
            examples = [(names[b], int(counts[b])) for b in bad[:3]]
            raise ValueError(
                f"{bad.size} video(s) do not have {expected_views} views, e.g. {examples} (video id, views)"
            )
    sums /= counts[:, None]
    return VideoScores(video_ids=np.array(names, dtype=str), labels=labels, scores=sums, num_views=counts)


_UNSEEN = np.iinfo(np.int64).min  # label of a merged row no part has reached yet


def _place(
    sums: np.ndarray, labels: np.ndarray, rows: np.ndarray, part: PartialScores, names: list[str]
) -> None:
    """A part's sums into the merged table: copied into rows no part reached before, added to the others."""
    part_labels = np.asarray(part.labels, dtype=np.int64)
    unseen = labels[rows] == _UNSEEN
    labels[rows[unseen]] = part_labels[unseen]
    _check_labels(labels[rows], part_labels, names, rows)
    if len(set(part.video_ids)) != len(rows):  # a video twice in one part (not a ScoreAccumulator's)
        sums[rows[unseen]] = 0.0
        np.add.at(sums, rows, part.sums)
    elif unseen.all():  # the usual case: each video in one part
        sums[rows] = part.sums
    else:
        sums[rows[unseen]] = part.sums[unseen]
        sums[rows[~unseen]] += part.sums[~unseen]


def _refuse_views_twice(rows: np.ndarray, views: np.ndarray, crops: np.ndarray, names: Sequence[str]) -> None:
    """A ValueError naming the first (video, view, crop) that appears twice."""
    if len(rows) == 0:
        return
    span_crop, span = int(crops.max()) + 1, (int(views.max()) + 1) * (int(crops.max()) + 1)
    codes = (rows * span + views * span_crop + crops) if min(views.min(), crops.min()) >= 0 else None
    if codes is not None and len(names) * span <= 8 * len(rows) + 4096:  # dense: linear count, no sort
        seen = np.bincount(codes, minlength=len(names) * span)
        twice = np.flatnonzero(seen > 1)
        first = int(twice[0]) if twice.size else -1
        if first >= 0:
            row, rest = divmod(first, span)
            raise ValueError(
                f"video {names[row]!r}: view {rest // span_crop} crop {rest % span_crop} was scored twice"
            )
        return
    order = np.lexsort((crops, views, rows))
    r, v, c = rows[order], views[order], crops[order]
    twice = np.flatnonzero((r[1:] == r[:-1]) & (v[1:] == v[:-1]) & (c[1:] == c[:-1]))
    if twice.size:
        k = int(twice[0])
        raise ValueError(f"video {names[r[k]]!r}: view {v[k]} crop {c[k]} was scored twice")


def aggregate_views(
    video_ids: Sequence[str],
    views: Sequence[int],
    crops: Sequence[int],
    labels: Sequence[int],
    probs: np.ndarray,
    expected_views: int | None = None,
) -> VideoScores:
    """Mean softmax per video over all its views x crops (probs (M, C) -> scores (V, C))."""
    return merge_partials([partial_sums(video_ids, views, crops, labels, probs)], expected_views)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (M, C) logits, stable for large values."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _labelled(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores), np.asarray(labels)
    keep = labels >= 0
    if not keep.any():
        raise ValueError("no labelled videos: accuracy needs labels (test lists of some datasets have none)")
    if labels[keep].max() >= scores.shape[1]:
        raise ValueError(f"label {int(labels[keep].max())} out of range for {scores.shape[1]} classes")
    if keep.all():
        return scores, labels  # no copy of the table
    return scores[keep], labels[keep]


def predictions(scores: np.ndarray) -> np.ndarray:
    """(V, C) -> (V,) argmax; ties go to the lowest class index."""
    return np.argmax(scores, axis=1)


def label_ranks(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ranks, labels) of the labelled videos: the position of each one's label in its scores sorted
    highest first, ties by lower class index (0 = the prediction; rank < k = a top-k hit).

    The classes scoring above the label plus those scoring the same at a lower index: what a stable sort of
    the negated scores gives, in O(C) per video without sorting, over blocks of rows that stay in cache."""
    s, y = _labelled(scores, labels)
    ranks = np.empty(len(y), dtype=np.int64)
    columns = np.arange(s.shape[1])[None, :]
    for a in range(0, len(y), _BLOCK_ROWS):
        block, yb = s[a : a + _BLOCK_ROWS], y[a : a + _BLOCK_ROWS, None]
        target = np.take_along_axis(block, yb, axis=1)
        ranks[a : a + _BLOCK_ROWS] = (block > target).sum(axis=1) + ((block == target) & (columns < yb)).sum(
            axis=1
        )
    return ranks, y


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of labelled videos whose label is among the k highest scores (ties: lower index first)."""
    ranks, _ = label_ranks(scores, labels)
    return float((ranks < k).mean())


def confusion_matrix(scores: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """(C, C) int64 counts; row = true class, column = predicted class."""
    s, y = _labelled(scores, labels)
    c = num_classes or s.shape[1]
    out = np.zeros((c, c), dtype=np.int64)
    np.add.at(out, (y, predictions(s)), 1)
    return out


def per_class_accuracy(scores: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """(C,) top-1 accuracy per true class; NaN for classes with no video."""
    cm = confusion_matrix(scores, labels, num_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def mean_class_accuracy(scores: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> float:
    """Mean of the per-class accuracies over the classes that have at least one video."""
    return float(np.nanmean(per_class_accuracy(scores, labels, num_classes)))


def summary(video: VideoScores) -> dict[str, float]:
    """top1 / top5 / mean_class_acc in [0, 1] plus the number of labelled videos (one pass over the scores:
    the same numbers as topk_accuracy and mean_class_accuracy, since argmax == label iff the label's rank is
    0)."""
    ranks, y = label_ranks(video.scores, video.labels)
    support = np.bincount(y, minlength=video.scores.shape[1])
    hits = np.bincount(y[ranks == 0], minlength=video.scores.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, hits / np.maximum(support, 1), np.nan)
    return {
        "top1": float((ranks < 1).mean()),
        "top5": float((ranks < 5).mean()),
        "mean_class_acc": float(np.nanmean(per_class)),
        "num_labelled": float((video.labels >= 0).sum()),
    }
