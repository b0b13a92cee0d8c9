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

import numpy as np


@dataclass
class PartialScores:
    """Sums of softmax scores per video over the views one worker saw.

    video_ids (V,) str, labels (V,) int64, sums (V, C) float64, view_keys: per video, the (view, crop) pairs
    summed (to catch a view counted twice and to count views per video).
    """

    video_ids: list[str]
    labels: np.ndarray
    sums: np.ndarray
    view_keys: list[list[tuple[int, int]]]


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


class ScoreAccumulator:
    """Per-video sums of softmax scores, added batch by batch: memory (V, C) for V videos, never (M, C) for
    M = 30 V views (16,000 videos x 30 views x 400 classes: every view's float32 row kept to the end, then
    concatenated and made float64, peaked at about 3 GB in one replica; these sums take 51 MB)."""

    def __init__(self) -> None:
        self._where: dict[str, int] = {}
        self._ids: list[str] = []
        self._labels: list[int] = []
        self._keys: list[list[tuple[int, int]]] = []
        self._rows: list[np.ndarray] = []
        self._classes: int | None = None

    def add(self, video_ids: Sequence[str], views: Sequence[int], crops: Sequence[int], labels: Sequence[int],
            probs: np.ndarray) -> None:  # fmt: skip
        """Add M views (probs (M, C)) to their videos' sums."""
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2 or len(probs) != len(video_ids):
            raise ValueError(f"probs must be (M, C) with M = {len(video_ids)} views, got {probs.shape}")
        if not (len(views) == len(crops) == len(labels) == len(video_ids)):
            raise ValueError("video_ids, views, crops and labels must have one entry per view")
        if self._classes is not None and probs.shape[1] != self._classes:
            raise ValueError(f"score vectors of different sizes: {self._classes} and {probs.shape[1]}")
        self._classes = probs.shape[1]
        where, ids, lab, keys, rows = self._where, self._ids, self._labels, self._keys, self._rows
        for i, vid in enumerate(video_ids):
            vid = str(vid)
            j = where.get(vid)
            if j is None:
                j = where[vid] = len(ids)
                ids.append(vid)
                lab.append(int(labels[i]))
                keys.append([])
                rows.append(np.zeros(probs.shape[1], dtype=np.float64))
            elif lab[j] != int(labels[i]):
                raise ValueError(
                    f"video {vid!r} has views with different labels: {lab[j]} and {int(labels[i])}"
                )
            keys[j].append((int(views[i]), int(crops[i])))
            rows[j] += probs[i]

    def result(self, num_classes: int = 0) -> PartialScores:
        """The sums so far, in order of first appearance (``num_classes``: the width if nothing was added)."""
        width = self._classes if self._classes is not None else num_classes
        sums = np.stack(self._rows) if self._rows else np.zeros((0, width), dtype=np.float64)
        return PartialScores(list(self._ids), np.asarray(self._labels, dtype=np.int64), sums,
                             [list(k) for k in self._keys])  # fmt: skip


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
    """
    sums: dict[str, np.ndarray] = {}
    labels: dict[str, int] = {}
    keys: dict[str, set[tuple[int, int]]] = {}
    num_classes: int | None = None
    for part in parts:
        if part.sums.shape[0] == 0:
            continue
        if num_classes is None:
            num_classes = part.sums.shape[1]
        elif part.sums.shape[1] != num_classes:
            raise ValueError(f"score vectors of different sizes: {num_classes} and {part.sums.shape[1]}")
        for vid, label, row, vkeys in zip(part.video_ids, part.labels, part.sums, part.view_keys):
            if vid not in sums:
                sums[vid] = row.copy()
                labels[vid] = int(label)
                keys[vid] = set()
            else:
                if labels[vid] != int(label):
                    raise ValueError(f"video {vid!r} has views with different labels: {labels[vid]}, {label}")
                sums[vid] += row
            for key in vkeys:
                if key in keys[vid]:
                    raise ValueError(f"video {vid!r}: view {key[0]} crop {key[1]} was scored twice")
                keys[vid].add(key)
    if not sums:
        raise ValueError("no views were scored")
    order = sorted(sums)
    counts = np.array([len(keys[v]) for v in order], dtype=np.int64)
    if expected_views is not None:
        bad = [(v, int(c)) for v, c in zip(order, counts) if c != expected_views]
        if bad:
            raise ValueError(
                f"{len(bad)} video(s) do not have {expected_views} views, e.g. {bad[:3]} (video id, views)"
            )
    scores = np.stack([sums[v] for v in order]) / counts[:, None]
    return VideoScores(
        video_ids=np.array(order, dtype=str),
        labels=np.array([labels[v] for v in order], dtype=np.int64),
        scores=scores,
        num_views=counts,
    )


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
    return scores[keep], labels[keep]


def predictions(scores: np.ndarray) -> np.ndarray:
    """(V, C) -> (V,) argmax; ties go to the lowest class index."""
    return np.argmax(scores, axis=1)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of labelled videos whose label is among the k highest scores (ties: lower index first)."""
    s, y = _labelled(scores, labels)
    k = min(k, s.shape[1])
    # stable sort of the negated scores keeps lower class indices first among equal scores
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return float((top == y[:, None]).any(axis=1).mean())


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
    """top1 / top5 / mean_class_acc in [0, 1] plus the number of labelled videos."""
    return {
        "top1": topk_accuracy(video.scores, video.labels, 1),
        "top5": topk_accuracy(video.scores, video.labels, 5),
        "mean_class_acc": mean_class_accuracy(video.scores, video.labels),
        "num_labelled": float((video.labels >= 0).sum()),
    }
