"""``predict(PredictConfig)``: videos -> class names (and embeddings, Grad-CAM maps), from one file to millions.

    list_sources (sources.py)      SOURCE... -> [VideoInput], each once (InputError when none is found)
    load_model (evaluation)        checkpoint file or folder | models:/name@alias | released TDN file
    plan_prediction (plan.py)      the model's recipe > protocol defaults, flags over both (each override
                                   printed once, recorded in every row); parts: ``videos_per_part`` videos,
                                   <out>.parts/part-<k>-<fingerprint>.<ext>, present = done (skipped)
    engine local (a few videos)    Predictor (scoring.py) in this process, part by part
    engine ray                     Ray Data over the videos still to do (replica.py)
    each part, once its last video is in: written atomically (local temp + rename, one PUT on S3); a progress
    line with the ETA every ``progress_interval_s``
    merge                          every part -> --out in one atomic write; the summary counts the error rows
                                   (videos that could not be read: the run goes on and exits 0)

Why parts: a run of millions of videos that is killed loses at most the parts in flight, and the output is
written once; the parts stay beside it (readable as one dataset: ``pyarrow.dataset.dataset(<out>.parts)``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from pipeline import storage
from pipeline.errors import InputError
from pipeline.ray_connect import init_ray
from tdn.evaluation.model_source import LoadedModel, load_model
from tdn.evaluation.protocol import EvalConfig
from tdn.evaluation.replica_pool import build_replica_model, pick_device
from tdn.prediction.config import PredictConfig
from tdn.prediction.output import PredictionRow, concat, encode, error_count, format_of, parse_rows
from tdn.prediction.plan import (
    Answer,
    Part,
    PredictPlan,
    PredictSummary,
    plan_parts,
    plan_prediction,
    result_row,
    to_row,
)
from tdn.prediction.replica import run_on_ray
from tdn.prediction.scoring import Predictor
from tdn.prediction.sources import list_sources
from tdn.tracking.mlflow_store import optional_tracking_uri

Log = Callable[[str], None]


def predict(cfg: PredictConfig, log: Log = print) -> PredictSummary:
    """Run a prediction (module docstring); ``log`` gets the notes and progress lines."""
    start = time.monotonic()
    videos = list_sources(cfg.sources)
    if not cfg.out and len(videos) > cfg.table_max_videos:
        raise InputError(
            f"{len(videos)} videos: give --out FILE (.csv, .jsonl, .parquet); the table is for "
            f"{cfg.table_max_videos} or fewer"
        )
    loaded = load_model(cfg.model, optional_tracking_uri(cfg.tracking_uri))  # as evaluate: flag > env > local
    plan = plan_prediction(cfg, loaded)
    log(f"[predict] model {loaded.model_id}: {loaded.recipe.describe()} (recipe: {loaded.recipe.origin})")
    for line in plan.overrides:
        log(
            f"[predict] note: {line} overrides the model's recipe (recorded in the output's overrides column)"
        )
    parts = plan_parts(videos, plan, cfg)
    todo = [p for p in parts if not p.done]
    engine = (
        cfg.engine if cfg.engine != "auto" else ("local" if len(videos) <= cfg.local_max_videos else "ray")
    )
    p = plan.protocol
    log(
        f"[predict] {len(videos)} videos, {p.name} ({p.clips} clip(s) x {p.crops} crop(s) of {p.input_size} px "
        f"at short side {p.short_side}), {len(parts)} part(s), {len(parts) - len(todo)} already done, "
        f"engine {engine}"
    )
    progress = Progress(sum(len(x.videos) for x in todo), len(parts) - len(todo), len(parts), cfg, log)
    if todo:
        if engine == "local":
            run_local(loaded, plan, cfg, todo, progress)
        else:
            run_ray(loaded, plan, cfg, todo, progress)
    failed, rows = progress.failed, [r for part in parts for r in part.rows]
    if cfg.out:
        failed, rows = merge_parts(parts, cfg.out, plan.spec.top_k)
    seconds = time.monotonic() - start
    return PredictSummary(
        videos=len(videos),
        failed=failed,
        parts=len(parts),
        parts_already_done=len(parts) - len(todo),
        seconds=round(seconds, 3),
        videos_per_s=round(progress.done / seconds, 3) if seconds > 0 else 0.0,
        engine=engine,
        out=cfg.out,
        rows=tuple(rows) if len(videos) <= cfg.table_max_videos else (),
    )


class Progress:
    """Counts finished videos and parts; a line with rate and ETA every ``progress_interval_s``."""

    def __init__(self, total: int, parts_done: int, parts: int, cfg: PredictConfig, log: Log) -> None:
        self.total, self.parts_done, self.parts, self.log = total, parts_done, parts, log
        self.interval = cfg.progress_interval_s
        self.done = self.failed = 0
        self.start = self.last = time.monotonic()

    def add(self, videos: int, failed: int) -> None:
        self.done += videos
        self.failed += failed

    def part_written(self) -> None:
        self.parts_done += 1
        now = time.monotonic()
        if now - self.last >= self.interval or self.parts_done == self.parts:
            self.last = now
            self.log(self.line(now))

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        return (
            f"[predict] {self.done}/{self.total} videos, {self.parts_done}/{self.parts} parts, {rate:.1f} videos/s, "
            f"{self.failed} failed, ETA {int(left) // 60}:{int(left) % 60:02d}"
        )


def write_part(part: Part, plan: PredictPlan, progress: Progress) -> None:
    if part.uri:
        data = encode(part.rows, format_of(part.uri), plan.spec.top_k, plan.spec.features)
        storage.write_bytes_atomic(part.uri, data)
    progress.part_written()


def run_local(
    loaded: LoadedModel, plan: PredictPlan, cfg: PredictConfig, todo: Sequence[Part], progress: Progress
) -> None:
    """Every part in this process, one Predictor (the same a Ray replica runs)."""
    import torch

    device = pick_device(EvalConfig(device=cfg.device, engine="local"))
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cfg.cpus_per_replica)))
    predictor = Predictor(
        build_replica_model(loaded.model_config, loaded.state_dict, device),
        plan.spec,
        device,
        max(1, int(cfg.cpus_per_replica)),
    )
    try:
        for part in todo:
            for k in range(0, len(part.videos), cfg.batch_size):
                results = predictor.predict(part.videos[k : k + cfg.batch_size])
                part.rows.extend(result_row(plan, r) for r in results)
                progress.add(len(results), sum(1 for r in results if r.error))
            write_part(part, plan, progress)
    finally:
        predictor.close()
        torch.set_num_threads(threads)


def run_ray(
    loaded: LoadedModel, plan: PredictPlan, cfg: PredictConfig, todo: Sequence[Part], progress: Progress
) -> None:
    """The videos of every part still to do through the replica pool; each part written once complete."""
    init_ray(cfg.address or None)
    pool_cfg = EvalConfig(
        replicas=cfg.replicas,
        batch_size=cfg.batch_size,
        device=cfg.device,
        cpus_per_replica=cfg.cpus_per_replica,
    )
    device = pick_device(pool_cfg)
    by_index = {p.index: p for p in todo}
    pending = {p.index: len(p.videos) for p in todo}
    order = {p.index: {v.video: i for i, v in enumerate(p.videos)} for p in todo}
    batches, replicas = run_on_ray(
        loaded, plan.spec, pool_cfg, device, [(v, p.index) for p in todo for v in p.videos]
    )
    for batch in batches:
        for row, index in zip(columns_to_rows(plan, batch), batch["part"]):
            part = by_index[int(index)]
            part.rows.append(row)
            pending[part.index] -= 1
            progress.add(1, 1 if row.error else 0)
            if pending[part.index] == 0:
                part.rows.sort(key=lambda r: order[part.index][r.video])  # the listing order, as locally
                write_part(part, plan, progress)


def columns_to_rows(plan: PredictPlan, batch: dict[str, np.ndarray]) -> Iterable[PredictionRow]:
    """A replica batch's columns (replica.result_columns) -> output rows."""
    feats = batch.get("features")
    for i, video in enumerate(batch["video"]):
        answer = Answer(
            str(video),
            str(batch["error"][i]),
            tuple(int(v) for v in batch["top_index"][i]),
            tuple(float(v) for v in batch["top_prob"][i]),
            int(batch["views"][i]),
            feats[i] if feats is not None else None,
        )
        yield to_row(plan, answer)


def merge_parts(parts: Sequence[Part], out: str, top_k: int) -> tuple[int, list[PredictionRow]]:
    """Every part's file -> ``out`` (one atomic write); returns the number of error rows in it and, for a
    handful of videos, the rows (the table)."""
    fmt = format_of(out)
    data = [storage.read_bytes(p.uri) for p in parts]
    storage.write_bytes_atomic(out, concat(data, fmt))
    rows = (
        [r for d in data for r in parse_rows(d, fmt, top_k)]
        if sum(len(p.videos) for p in parts) <= 100
        else []
    )
    return sum(error_count(d, fmt) for d in data), rows
