"""Batch evaluation of one model on one shard split: the steps, the clock and what is written.

    split folder (index.json + shard-*.tar), or an EvalSplit already read
      │ read_split (split.py)                 index.json read once, checksum verified; shards present
      │ load_model (model_source.py)          ModelSource -> LoadedModel (weights + identity), on the driver
      │ resolve_protocol (protocol.py)        once: clips x crops, input size, short side (given > the
      │                                       model's recipe > the protocol's), clips checked vs the shards;
      │                                       views the network cannot take (networks.too_small_for): InputError
      │ run_inference (replica_pool.py)       pool of model replicas (Ray Data) or this process, given the
      │                                       split and the protocol -> VideoScores (V, C)
      ▼ summary (metrics.py) -> EvalResult (sizes and their origin from the EvalProtocol) -> result files,
        report.html with Grad-CAM strips of the most-confused pairs (confusion_cams.py), and
        an MLflow evaluation run (results.py); a registered version is tagged with its latest evaluation
        (tdn.eval.<dataset>.<split>.<protocol>.*); the run's metrics carry the version's logged model_id
        and the split (tdn/tracking/lineage.py)

A split without labels (every label -1: test lists, a plain folder of videos) is scored the same way and
writes per-video scores and predictions only (results.write_unlabelled_outputs), with one line saying so
(``EvalOutcome.note``): no accuracy, no MLflow run, never a traceback.

Protocols, EvalConfig and the resolver: tdn/evaluation/protocol.py.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline import storage
from pipeline.config import config_from_dict
from pipeline.errors import InputError
from pipeline.shards.contract import CorruptShardError
from pipeline.shards.sampling import WINDOW
from tdn.evaluation.confusion_cams import confusion_cams
from tdn.evaluation.metrics import VideoScores, summary
from tdn.evaluation.model_source import LoadedModel, ModelSource, load_model
from tdn.evaluation.protocol import EvalConfig, resolve_protocol
from tdn.evaluation.replica_pool import run_inference
from tdn.evaluation.results import (
    DEFAULT_EXPERIMENT,
    EvalResult,
    EvalRunSpec,
    log_evaluation_run,
    write_outputs,
    write_unlabelled_outputs,
)
from tdn.evaluation.split import EvalSplit, read_split
from tdn.model.flops import count_flops
from tdn.model.networks import ModelConfig, too_small_for
from tdn.tracking.lineage import ShardDataset
from tdn.tracking.mlflow_store import eval_version_tag
from tdn.tracking.registry import tag_model_version

log = logging.getLogger(__name__)


@dataclass
class EvalOutcome:
    result: EvalResult
    video: VideoScores
    files: list[Path]
    run_id: str = ""
    note: str = ""  # one line for the user when something was left out (an unlabelled split: no accuracy)


@functools.lru_cache(maxsize=32)
def view_gflops(model_config_json: str, size: int) -> float:
    """Multiply-adds (G) of one view; cached because counting traces the model (seconds on a busy CPU)."""
    cfg = config_from_dict(ModelConfig, json.loads(model_config_json))
    return count_flops(cfg, size=size).gmacs


def check_model_fits(loaded: LoadedModel, split: EvalSplit) -> ModelConfig:
    """The model's config, once it agrees with the split's shards on classes, segments per clip and 5-frame
    windows; else an InputError naming the split's index.json (callers check this before Ray starts)."""
    model_cfg = config_from_dict(ModelConfig, loaded.model_config)
    index, where = split.index, storage.join(split.folder, "index.json")
    if index.classes and model_cfg.num_classes != len(index.classes):
        raise InputError(
            f"{where}: {len(index.classes)} classes, the model {loaded.model_id} has {model_cfg.num_classes}: "
            "wrong model or split"
        )
    sampling = index.sampling
    if sampling.num_segments != model_cfg.num_segments:
        raise InputError(
            f"{where}: the shards hold {sampling.num_segments} segments per clip, the model {loaded.model_id} "
            f"takes {model_cfg.num_segments}: shard the split with --num-segments {model_cfg.num_segments}"
        )
    if sampling.window != WINDOW:
        raise InputError(f"{where}: {sampling.window}-frame windows, TDN takes {WINDOW}")
    return model_cfg


def evaluate(
    source: ModelSource | LoadedModel,
    split: str | EvalSplit,
    cfg: EvalConfig,
    out_dir: str | os.PathLike,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    extra_tags: Mapping[str, str] | None = None,
    log_to_mlflow: bool = True,
) -> EvalOutcome:
    """Evaluate one model on one shard split (a folder, or its ``EvalSplit`` when the caller read it); write
    result files to ``out_dir`` and log an MLflow run.

    The clock runs from before the model is loaded to the last score merged: the paper's Table 5 "running
    time including loading data and network inference", divided by the number of videos.
    """
    split = split if isinstance(split, EvalSplit) else read_split(split)
    split.check_shards()
    index = split.index
    start, started_ms = time.perf_counter(), int(time.time() * 1000)
    loaded = source if isinstance(source, LoadedModel) else load_model(source, tracking_uri)
    model_cfg = check_model_fits(loaded, split)
    classes = list(index.classes)
    protocol = resolve_protocol(cfg, split, loaded.trained)
    too_small = too_small_for(model_cfg, protocol.view_side)
    if too_small:
        raise InputError(f"{loaded.model_id}: {too_small}")
    if protocol.mismatch:
        log.warning("%s: %s", loaded.model_id, protocol.mismatch)
    video, replicas, device = run_inference(loaded, split, cfg, protocol)
    wall = time.perf_counter() - start
    if len(video) != index.num_videos:
        raise CorruptShardError(
            f"{split.folder}: {len(video)} videos scored, index.json lists {index.num_videos}: the shards do not "
            "hold what their index says (nothing is recorded from a partial split)"
        )
    labelled = bool((video.labels >= 0).any())
    nan = float("nan")
    stats = summary(video) if labelled else {"top1": nan, "top5": nan, "mean_class_acc": nan}
    result = EvalResult(
        model_id=loaded.model_id,
        arch=model_cfg.arch,
        variant=model_cfg.variant,
        frames=str(model_cfg.num_segments),
        clips=protocol.clips,
        crops=protocol.crops,
        input_size=protocol.input_size,
        short_side=protocol.short_side,
        dataset=index.dataset,
        split=index.split,
        index_checksum=index.checksum,
        num_videos=len(video),
        top1_pct=100.0 * stats["top1"],
        top5_pct=100.0 * stats["top5"],
        mean_class_top1_pct=100.0 * stats["mean_class_acc"],
        ms_per_video=1000.0 * wall / len(video),
        videos_per_s=len(video) / wall,
        gflops=view_gflops(json.dumps(loaded.model_config, sort_keys=True), protocol.input_size),
        protocol=protocol.name,
        model_name=loaded.model_name,
        model_version=loaded.model_version,
        model_run_id=loaded.model_run_id,
        split_number=cfg.split_number,
        pretrain=cfg.pretrain,
        device=device,
        replicas=replicas,
        sizes_from=protocol.sizes_from,
        trained_input_size=protocol.trained.input_size,
        trained_short_side=protocol.trained.short_side,
        size_mismatch=protocol.mismatch,
        logged_model_id=loaded.logged_model_id,
        shards=split.folder,
    )
    names = classes or loaded.class_names
    if not labelled:
        files = write_unlabelled_outputs(out_dir, result, video, names)
        note = (
            f"{split.folder}: no labels in this split: wrote per-video scores and predictions of {len(video)} "
            f"videos to {out_dir} (per_video_scores.npz, predictions.csv); no accuracy, no MLflow evaluation run"
        )
        return EvalOutcome(result, video, files, "", note)
    cams = confusion_cams(loaded, split, protocol, video, cfg.report_cams) if cfg.report_cams else []
    files = write_outputs(out_dir, result, video, names, cams)
    run_id = ""
    if log_to_mlflow:
        dataset = ShardDataset.from_index(index, split.folder, "evaluation")
        spec = EvalRunSpec(
            tracking_uri, experiment, dict(extra_tags or {}), dataset=dataset, started_ms=started_ms
        )
        run_id = log_evaluation_run(result, files, spec)
        if loaded.model_name:
            _tag_model_version(loaded, result, run_id, tracking_uri)
    log.debug(  # the jobs' summaries say the same
        "evaluation %s on %s/%s: top-1 %.2f%% top-5 %.2f%%, %.1f ms/video (%d videos, %d replicas, %s)",
        result.model_id,
        result.dataset,
        result.split,
        result.top1_pct,
        result.top5_pct,
        result.ms_per_video,
        result.num_videos,
        replicas,
        device,
    )
    return EvalOutcome(result, video, files, run_id)


def _tag_model_version(
    loaded: LoadedModel, result: EvalResult, run_id: str, tracking_uri: str | None
) -> None:
    """Link the registered version back to its latest evaluation (the run links to the version by tags)."""
    where = (result.dataset, result.split, result.protocol)
    tag_model_version(
        tracking_uri,
        loaded.model_name,
        loaded.model_version,
        {
            eval_version_tag(*where, "run_id"): run_id,
            eval_version_tag(*where, "top1_pct"): f"{result.top1_pct:.2f}",
        },
    )
