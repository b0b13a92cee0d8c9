"""Batch evaluation of one model on one shard split: the steps, the clock and what is written.

    split folder (index.json + shard-*.tar)
      │ read_split_index, shard_uris          checksum verified; clip count checked against the protocol
      │ load_model (model_source.py)          ModelSource -> LoadedModel (weights + identity), on the driver
      │ input_sizes (protocol.py)             input size, short side: given, else the model's, else protocol's
      │ run_inference (replica_pool.py)       pool of model replicas (Ray Data) or this process
      │                                       -> VideoScores (V, C)
      ▼ summary (metrics.py) -> EvalResult -> result files + an MLflow evaluation run (results.py)
        a registered version is tagged with its latest evaluation (tdn.eval.<dataset>.<split>.<protocol>.*);
        the run's metrics carry the version's logged model_id and the split (tdn/tracking/lineage.py)

Protocols and EvalConfig: tdn/evaluation/protocol.py.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline import storage
from pipeline.shards.contract import CorruptShardError, ShardIndex
from tdn.evaluation.metrics import VideoScores, summary
from tdn.evaluation.model_source import LoadedModel, ModelSource, load_model
from tdn.evaluation.protocol import EvalConfig, input_sizes
from tdn.evaluation.replica_pool import run_inference
from tdn.evaluation.results import DEFAULT_EXPERIMENT, EvalResult, log_evaluation_run, write_outputs
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


# ----------------------------------------------------------------------------------------------- shards


def read_split_index(split_dir: str) -> ShardIndex:
    """index.json of a shard split, schema and checksum verified (an edited index is an error, not a result)."""
    from pipeline.loading.shard_reading import read_index

    index = read_index(split_dir)
    if not index.checksum:
        raise ValueError(f"{split_dir}: index.json has no checksum; results must name the shards they used")
    return index


def shard_uris(split_dir: str, index: ShardIndex) -> list[str]:
    uris = [storage.join(split_dir, s.name) for s in index.shards]
    missing = [u for u in uris if not storage.exists(u)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} shard(s) listed in index.json are missing, e.g. {missing[0]}"
        )
    if not uris:
        raise ValueError(f"{split_dir}: index.json lists no shards")
    return uris


# ----------------------------------------------------------------------------------------------- evaluate


@functools.lru_cache(maxsize=32)
def view_gflops(model_config_json: str, size: int) -> float:
    """Multiply-adds (G) of one view; cached because counting traces the model (seconds on a busy CPU)."""
    from pipeline.config import config_from_dict
    from tdn.model.flops import count_flops
    from tdn.model.networks import ModelConfig

    cfg = config_from_dict(ModelConfig, json.loads(model_config_json))
    return count_flops(cfg, size=size).gmacs


def evaluate(
    source: ModelSource | LoadedModel,
    split_dir: str,
    cfg: EvalConfig,
    out_dir: str | os.PathLike,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    extra_tags: Mapping[str, str] | None = None,
    log_to_mlflow: bool = True,
) -> EvalOutcome:
    """Evaluate one model on one shard split; write result files to ``out_dir`` and log an MLflow run.

    The clock runs from before the model is loaded to the last score merged: the paper's Table 5 "running
    time including loading data and network inference", divided by the number of videos.
    """
    from pipeline.config import config_from_dict
    from tdn.model.networks import ModelConfig

    index = read_split_index(split_dir)
    shards = shard_uris(split_dir, index)
    clips, crops, _, _ = cfg.resolved()
    views_per_video = index.views_per_video
    if views_per_video and views_per_video != clips:
        raise ValueError(
            f"{split_dir}: shards hold {views_per_video} clip(s) per video but protocol {cfg.protocol} needs "
            f"{clips}; write evaluation shards with the protocol's clip count"
        )
    start = time.perf_counter()
    loaded = source if isinstance(source, LoadedModel) else load_model(source, tracking_uri)
    model_cfg = config_from_dict(ModelConfig, loaded.model_config)
    classes = list(index.classes)
    if classes and model_cfg.num_classes != len(classes):
        raise ValueError(
            f"model has {model_cfg.num_classes} classes, the shards' dataset {len(classes)}: wrong model or split"
        )
    sizes = input_sizes(cfg, loaded.train_input_size, loaded.train_short_side)
    if sizes.mismatch:
        log.warning("%s: %s", loaded.model_id, sizes.mismatch)
    size, short = sizes.input_size, sizes.short_side
    cfg = dataclasses.replace(cfg, input_size=size, short_side=short)
    video, replicas, device = run_inference(loaded, shards, cfg, views_per_video * crops or None)
    wall = time.perf_counter() - start
    if len(video) != index.num_videos:
        raise CorruptShardError(
            f"{split_dir}: {len(video)} videos scored, index.json lists {index.num_videos}: the shards do not hold "
            "what their index says (nothing is recorded from a partial split)"
        )
    stats = summary(video)
    result = EvalResult(
        model_id=loaded.model_id,
        arch=model_cfg.arch,
        variant=model_cfg.variant,
        frames=str(model_cfg.num_segments),
        clips=clips,
        crops=crops,
        input_size=size,
        short_side=short,
        dataset=index.dataset,
        split=index.split,
        index_checksum=index.checksum,
        num_videos=len(video),
        top1_pct=100.0 * stats["top1"],
        top5_pct=100.0 * stats["top5"],
        mean_class_top1_pct=100.0 * stats["mean_class_acc"],
        ms_per_video=1000.0 * wall / len(video),
        videos_per_s=len(video) / wall,
        gflops=view_gflops(json.dumps(loaded.model_config, sort_keys=True), size),
        protocol=cfg.protocol,
        model_name=loaded.model_name,
        model_version=loaded.model_version,
        model_run_id=loaded.model_run_id,
        split_number=cfg.split_number,
        pretrain=cfg.pretrain,
        device=device,
        replicas=replicas,
        sizes_from=sizes.sizes_from,
        trained_input_size=sizes.trained_input_size,
        trained_short_side=sizes.trained_short_side,
        size_mismatch=sizes.mismatch,
        logged_model_id=loaded.logged_model_id,
        shards=split_dir,
    )
    files = write_outputs(out_dir, result, video, classes or loaded.class_names)
    run_id = ""
    if log_to_mlflow:
        dataset = ShardDataset.from_index(index, split_dir, "evaluation")
        run_id = log_evaluation_run(result, files, tracking_uri, experiment, extra_tags, dataset=dataset)
        if loaded.model_name:
            _tag_model_version(loaded, result, run_id, tracking_uri)
    log.info(
        "evaluation %s on %s/%s: top-1 %.2f%% top-5 %.2f%%, %.1f ms/video (%d videos, %d replicas, %s)",
        result.model_id, result.dataset, result.split, result.top1_pct, result.top5_pct, result.ms_per_video,
        result.num_videos, replicas, device,
    )  # fmt: skip
    return EvalOutcome(result, video, files, run_id)


def _tag_model_version(
    loaded: LoadedModel, result: EvalResult, run_id: str, tracking_uri: str | None
) -> None:
    """Link the registered version back to its latest evaluation (the run links to the version by tags)."""
    where = (result.dataset, result.split, result.protocol)
    tag_model_version(tracking_uri, loaded.model_name, loaded.model_version, {
        eval_version_tag(*where, "run_id"): run_id,
        eval_version_tag(*where, "top1_pct"): f"{result.top1_pct:.2f}",
    })  # fmt: skip
