"""Ensembles like the paper's "8+16" rows, from stored per-video scores (no inference is re-run).

    run A per_video_scores.npz (V, C) ─┐
    run B per_video_scores.npz (V, C) ─┴ same videos, same shards checksum? ─ mean of scores ─ metrics
    -> its own EvalResult row (frames "8+16", GFLOPs summed) and its own evaluation run (tdn.ensemble_of)

The paper averages the softmax scores of the 8- and the 16-frame models. Scores are already per-video
averages of per-view softmax, so their mean is the mean over both models' views.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tdn.evaluation.metrics import VideoScores, summary
from tdn.evaluation.results import (
    DEFAULT_EXPERIMENT,
    EvalResult,
    EvalRunSpec,
    download_run_scores,
    log_evaluation_run,
    result_from_run,
    write_outputs,
)
from tdn.tracking.mlflow_store import tracking_client

log = logging.getLogger(__name__)


def combine_scores(parts: Sequence[VideoScores], weights: Sequence[float] | None = None) -> VideoScores:
    """Weighted mean of several models' video scores; the video sets and labels must be identical."""
    if len(parts) < 2:
        raise ValueError("an ensemble needs at least two evaluations")
    w = np.asarray(weights if weights is not None else [1.0] * len(parts), dtype=np.float64)
    if len(w) != len(parts) or (w <= 0).any():
        raise ValueError("one positive weight per evaluation")
    first = parts[0]
    order = np.argsort(first.video_ids, kind="stable")
    ids = first.video_ids[order]
    total = np.zeros_like(first.scores[order], dtype=np.float64)
    for part, wi in zip(parts, w):
        o = np.argsort(part.video_ids, kind="stable")
        if len(part.video_ids) != len(ids) or not np.array_equal(part.video_ids[o], ids):
            only = sorted(set(part.video_ids.tolist()) ^ set(ids.tolist()))[:3]
            raise ValueError(
                f"evaluations cover different videos (e.g. {only}); ensemble runs on the same shards"
            )
        if not np.array_equal(part.labels[o], first.labels[order]):
            raise ValueError("evaluations disagree on labels of the same videos")
        if part.scores.shape[1] != total.shape[1]:
            raise ValueError(f"evaluations have {part.scores.shape[1]} and {total.shape[1]} classes")
        total += wi * part.scores[o]
    num_views = sum(p.num_views[np.argsort(p.video_ids, kind="stable")] for p in parts)
    return VideoScores(ids, first.labels[order], total / w.sum(), np.asarray(num_views, dtype=np.int64))


def ensemble_result(members: Sequence[EvalResult], video: VideoScores, run_ids: Sequence[str]) -> EvalResult:
    """The ensemble's row: frames joined with '+', GFLOPs summed, timing summed (sequential cost)."""
    checksums = {m.index_checksum for m in members}
    if len(checksums) != 1:
        raise ValueError(f"evaluations used different shards (index checksums {sorted(checksums)})")
    protocols = {(m.clips, m.crops, m.input_size, m.short_side) for m in members}
    if len(protocols) != 1:
        raise ValueError(f"evaluations used different protocols {sorted(protocols)}")
    stats = summary(video)
    m0 = members[0]
    ms = sum(m.ms_per_video for m in members)
    return EvalResult(
        model_id="ensemble:" + "+".join(m.model_id for m in members),
        arch=m0.arch if len({m.arch for m in members}) == 1 else "+".join(m.arch for m in members),
        variant=m0.variant
        if len({m.variant for m in members}) == 1
        else "+".join(m.variant for m in members),
        frames="+".join(m.frames for m in members),
        clips=m0.clips,
        crops=m0.crops,
        input_size=m0.input_size,
        short_side=m0.short_side,
        dataset=m0.dataset,
        split=m0.split,
        index_checksum=m0.index_checksum,
        num_videos=len(video),
        top1_pct=100.0 * stats["top1"],
        top5_pct=100.0 * stats["top5"],
        mean_class_top1_pct=100.0 * stats["mean_class_acc"],
        ms_per_video=ms,
        videos_per_s=1000.0 / ms if ms > 0 else 0.0,
        gflops=sum(m.gflops for m in members),
        protocol=m0.protocol,
        split_number=m0.split_number,
        pretrain=m0.pretrain,
        device=m0.device,
        ensemble_of=list(run_ids),
        shards=m0.shards,
    )


def ensemble_runs(
    run_ids: Sequence[str],
    out_dir: str | os.PathLike,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    weights: Sequence[float] | None = None,
) -> tuple[EvalResult, str]:
    """Combine stored evaluation runs into an ensemble row, written to ``out_dir`` and logged; (row, run id)."""
    client = tracking_client(tracking_uri)
    members = [result_from_run(client.get_run(r)) for r in run_ids]
    video = combine_scores([download_run_scores(r, tracking_uri) for r in run_ids], weights)
    result = ensemble_result(members, video, run_ids)
    files = write_outputs(Path(out_dir), result, video)
    spec = EvalRunSpec(tracking_uri, experiment, run_name=f"ensemble-{result.frames}-{result.dataset}")
    run_id = log_evaluation_run(result, files, spec)
    log.info("ensemble %s: top-1 %.2f%% (%s)", result.frames, result.top1_pct, ", ".join(run_ids))
    return result, run_id
