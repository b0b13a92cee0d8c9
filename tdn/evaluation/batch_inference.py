"""Batch evaluation over WebDataset shards with a pool of model replicas (Ray Data).

    shards of one split (index.json + shard-*.tar)
      │ ray.data.from_items([{"shard": uri}, ...])        one block per shard
      │ map_batches(_Replica, ActorPoolStrategy(size=n))  each replica loads the model once (from the object
      │                                                   store), runs eval_batches over its shards:
      │     x (B, T, 5, 3, S, S) -> logits (B, C) -> softmax -> sums per video id -> PartialScores rows
      ▼ driver: merge_partials -> VideoScores (V, C) = mean over each video's clips x crops, metrics, results

A video's views may sit in different shards and be scored by different replicas: replicas return per-video
*sums* with the (view, crop) keys they saw, and the driver adds them up, checking that every video got exactly
clips x crops views, none twice.

Protocols (the paper's):
    ssv1x1     1 clip x 1 centre crop 224 at short side 256 (Something-Something, Table 2)
    k400_10x3  10 clips x 3 crops of 256 at short side 256 (Kinetics, Table 3)
The clip count comes from the shards (sampled when they were written); evaluation checks it matches.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipeline import storage
from tdn.evaluation.metrics import PartialScores, VideoScores, merge_partials, partial_sums, summary
from tdn.evaluation.results import DEFAULT_EXPERIMENT, EvalResult, log_evaluation_run, write_outputs

log = logging.getLogger(__name__)

Protocol = Literal["ssv1x1", "k400_10x3"]

# protocol -> (clips, crops, input size, short side)
PROTOCOLS: dict[str, tuple[int, int, int, int]] = {
    "ssv1x1": (1, 1, 224, 256),
    "k400_10x3": (10, 3, 256, 256),
}


@dataclass
class ModelSource:
    """Which weights to evaluate: exactly one of ``uri`` (project checkpoint path / s3:// URI /
    ``models:/name/version`` / ``models:/name@alias``) or ``official`` (a checkpoint saved by the released
    TDN code, which does not record its shape: give arch, num_segments, num_classes)."""

    uri: str = ""
    official: str = ""
    arch: Literal["resnet50", "resnet101"] = "resnet50"
    num_segments: int = 8
    num_classes: int = 400

    def check(self) -> None:
        if bool(self.uri) == bool(self.official):
            raise ValueError("give exactly one of model.uri (checkpoint or models:/...) and model.official")


@dataclass
class EvalConfig:
    """How to evaluate. ``clips`` / ``input_size`` / ``short_side`` 0 = the protocol's; tests shrink them."""

    protocol: Protocol = "ssv1x1"
    clips: int = 0
    input_size: int = 0
    short_side: int = 0
    replicas: int = 1
    batch_size: int = 8
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpus_per_replica: float = 1.0  # also the replica's torch and JPEG decoding threads
    loader_workers: int = 0  # DataLoader processes per replica (0: decode in the replica; more on GPU nodes)
    # "ray": the actor pool on the cluster; "local": score in this process (small splits, no actor start-up)
    engine: Literal["ray", "local"] = "ray"
    split_number: int = 0  # recorded with the result (UCF101/HMDB51 split 1..3)
    pretrain: str = ""  # recorded with the result (Table 4's "Pretrain" column)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; known: {sorted(PROTOCOLS)}")
        if self.replicas < 1 or self.batch_size < 1 or self.cpus_per_replica <= 0:
            raise ValueError("replicas and batch_size must be >= 1, cpus_per_replica > 0")

    def resolved(self) -> tuple[int, int, int, int]:
        """(clips, crops, input size, short side)."""
        clips, crops, size, short = PROTOCOLS[self.protocol]
        return self.clips or clips, crops, self.input_size or size, self.short_side or short


@dataclass
class LoadedModel:
    """Weights and identity of the model under evaluation (what replicas receive through the object store)."""

    model_config: dict[str, Any]
    state_dict: dict[str, Any]
    class_names: list[str]
    model_id: str
    model_name: str = ""
    model_version: str = ""
    model_run_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalOutcome:
    result: EvalResult
    video: VideoScores
    files: list[Path]
    run_id: str = ""


# ----------------------------------------------------------------------------------------------- models


def parse_models_uri(uri: str) -> tuple[str, str, str]:
    """``models:/name/3`` -> (name, "3", ""); ``models:/name@champion`` -> (name, "", "champion")."""
    body = uri[len("models:/") :]
    if "@" in body:
        name, alias = body.rsplit("@", 1)
        if not name or not alias:
            raise ValueError(f"bad model URI {uri!r}: expected models:/name@alias")
        return name, "", alias
    name, _, version = body.rpartition("/")
    if not name or not version.isdigit():
        raise ValueError(f"bad model URI {uri!r}: expected models:/name/<version> or models:/name@alias")
    return name, version, ""


def load_model(source: ModelSource, tracking_uri: str | None = None) -> LoadedModel:
    """Resolve a ModelSource to weights plus identity (registered name/version/run id when it has one)."""
    from tdn.checkpoints.project import load_model_checkpoint, load_official_checkpoint
    from tdn.model.networks import ModelConfig

    source.check()
    if source.official:
        model = load_official_checkpoint(source.official, source.arch, source.num_segments, source.num_classes)
        cfg = ModelConfig(
            arch=source.arch, num_classes=source.num_classes, num_segments=source.num_segments, variant="tdn"
        )
        from pipeline.config import config_to_dict

        return LoadedModel(config_to_dict(cfg), model.state_dict(), [], f"official:{source.official}")
    uri = source.uri
    if not uri.startswith("models:/"):
        model, ckpt = load_model_checkpoint(uri)
        return LoadedModel(ckpt["model_config"], model.state_dict(), list(ckpt.get("class_names") or []), uri)

    from mlflow.tracking import MlflowClient

    from tdn.tracking.registry import download_checkpoint

    client = MlflowClient(tracking_uri=tracking_uri)
    name, version, alias = parse_models_uri(uri)
    mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    model, ckpt = load_model_checkpoint(download_checkpoint(f"models:/{name}/{mv.version}", tracking_uri))
    return LoadedModel(
        ckpt["model_config"],
        model.state_dict(),
        list(ckpt.get("class_names") or []),
        f"models:/{name}/{mv.version}",
        model_name=name,
        model_version=str(mv.version),
        model_run_id=mv.run_id or "",
    )


# ----------------------------------------------------------------------------------------------- shards


def read_split_index(split_dir: str) -> dict[str, Any]:
    """index.json of a shard split, schema and checksum verified (an edited index is an error, not a result)."""
    from pipeline.loading.loader import read_index

    index = read_index(split_dir)
    if not index.get("checksum"):
        raise ValueError(f"{split_dir}: index.json has no checksum; results must name the shards they used")
    return index


def shard_uris(split_dir: str, index: Mapping[str, Any]) -> list[str]:
    uris = [storage.join(split_dir, s["name"]) for s in index.get("shards", [])]
    missing = [u for u in uris if not storage.exists(u)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} shard(s) listed in index.json are missing, e.g. {missing[0]}")
    if not uris:
        raise ValueError(f"{split_dir}: index.json lists no shards")
    return uris


# ----------------------------------------------------------------------------------------------- replicas


def _loader_config(cfg: EvalConfig, device: str) -> Any:
    from pipeline.loading.loader import LoaderConfig

    _, crops, size, short = cfg.resolved()
    return LoaderConfig(
        input_size=size,
        eval_short_side=short,
        eval_crops=crops,  # type: ignore[arg-type]
        num_workers=cfg.loader_workers,
        decode_threads=max(1, int(cfg.cpus_per_replica)),
        pin_memory=device == "cuda",
        # on a GPU, ship uint8 frames (4x fewer bytes) and normalise them there
        output_dtype="uint8" if device == "cuda" else "float32",
    )


def score_shards(
    model: Any, shards: Sequence[str], loader_cfg: Any, batch_size: int, device: str = "cpu"
) -> PartialScores:
    """Softmax of every view in ``shards`` summed per video (one replica's work, also usable without Ray)."""
    import torch

    from pipeline.loading.loader import eval_batches
    from pipeline.loading.transforms import normalise_on_device

    ids: list[str] = []
    views: list[int] = []
    crops: list[int] = []
    labels: list[int] = []
    probs: list[np.ndarray] = []
    with torch.inference_mode():
        for batch in eval_batches(list(shards), loader_cfg, batch_size):
            x = normalise_on_device(batch.x, device)
            p = torch.softmax(model(x).float(), dim=1).cpu().numpy()
            probs.append(p)
            ids.extend(str(v) for v in batch.video_ids)
            views.extend(int(v) for v in batch.views)
            crops.extend(int(c) for c in batch.crops)
            labels.extend(int(y) for y in batch.labels)
    if not probs:
        num_classes = int(model.fc.out_features) if hasattr(model, "fc") else 0
        return PartialScores([], np.zeros(0, np.int64), np.zeros((0, num_classes)), [])
    return partial_sums(ids, views, crops, labels, np.concatenate(probs))


def build_replica_model(model_config: Mapping[str, Any], state_dict: Mapping[str, Any], device: str) -> Any:
    from pipeline.config import config_from_dict
    from tdn.checkpoints.project import strict_load
    from tdn.model.networks import ModelConfig, build_model_from_config

    cfg = config_from_dict(ModelConfig, {**model_config, "pretrained": None})
    model = build_model_from_config(cfg)
    strict_load(model, state_dict, "evaluation replica")
    return model.to(device).eval()


class _Replica:
    """One model replica in the Ray Data actor pool; a batch is a list of shard URIs."""

    def __init__(self, payload: list, loader_cfg: Any, batch_size: int, device: str, threads: int) -> None:
        import ray
        import torch

        torch.set_num_threads(max(1, threads))
        loaded: LoadedModel = ray.get(payload[0])  # wrapped in a list so Ray does not resolve it early
        self.device = device
        self.model = build_replica_model(loaded.model_config, loaded.state_dict, device)
        self.loader_cfg = loader_cfg
        self.batch_size = batch_size
        storage.register_webdataset_s3()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        part = score_shards(self.model, list(batch["shard"]), self.loader_cfg, self.batch_size, self.device)
        return {
            "video_id": np.array(part.video_ids, dtype=object),
            "label": part.labels,
            "sums": part.sums.astype(np.float64),
            "view_keys": np.array([json.dumps(k) for k in part.view_keys], dtype=object),
        }


def _pick_device(cfg: EvalConfig) -> str:
    if cfg.device != "auto":
        return cfg.device
    if cfg.engine == "local":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    import ray

    return "cuda" if ray.cluster_resources().get("GPU", 0) >= 1 else "cpu"


def _forward_env() -> dict[str, str]:
    """S3 endpoint/region/credentials of the driver for the replicas (kept in the runtime env only)."""
    from pipeline.shards.job import DEFAULT_FORWARD_ENV

    return {k: os.environ[k] for k in DEFAULT_FORWARD_ENV if k in os.environ}


def _replica_count(cfg: EvalConfig, device: str, num_shards: int) -> int:
    """Replicas that fit: on CPU, one CPU is left free for Ray Data's own tasks (a full pool deadlocks)."""
    import ray

    n = min(cfg.replicas, num_shards)
    res = ray.cluster_resources()
    if device == "cuda":
        n = min(n, int(res.get("GPU", 0)))
    else:
        fit = int((res.get("CPU", 1) - 1) // cfg.cpus_per_replica)
        if fit < n:
            log.warning("evaluation: %d CPU replica(s) asked for, %d fit leaving one CPU free", n, max(fit, 1))
        n = min(n, fit)
    return max(n, 1)


def run_inference(
    loaded: LoadedModel, shards: Sequence[str], cfg: EvalConfig, expected_views: int | None
) -> tuple[VideoScores, int, str]:
    """Score all shards on the Ray cluster (or here); returns (video scores, replicas used, device)."""
    device = _pick_device(cfg)
    if cfg.engine == "local":
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, int(cfg.cpus_per_replica)))
        try:
            model = build_replica_model(loaded.model_config, loaded.state_dict, device)
            part = score_shards(model, shards, _loader_config(cfg, device), cfg.batch_size, device)
        finally:
            torch.set_num_threads(threads)
        return merge_partials([part], expected_views), 0, device

    import ray

    replicas = _replica_count(cfg, device, len(shards))
    loader_cfg = _loader_config(cfg, device)
    payload = [ray.put(loaded)]
    remote: dict[str, Any] = {"num_gpus": 1} if device == "cuda" else {"num_cpus": cfg.cpus_per_replica}
    env = _forward_env()
    if env:
        remote["runtime_env"] = {"env_vars": env}
    ds = ray.data.from_items([{"shard": s} for s in shards], override_num_blocks=len(shards))
    ds = ds.map_batches(
        _Replica,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=replicas),
        fn_constructor_kwargs={
            "payload": payload,
            "loader_cfg": loader_cfg,
            "batch_size": cfg.batch_size,
            "device": device,
            "threads": max(1, int(cfg.cpus_per_replica)),
        },
        **remote,
    )
    parts: list[PartialScores] = []
    for b in ds.iter_batches(batch_format="numpy", batch_size=None):
        if len(b["video_id"]) == 0:
            continue
        parts.append(
            PartialScores(
                [str(v) for v in b["video_id"]],
                np.asarray(b["label"], dtype=np.int64),
                np.asarray(b["sums"], dtype=np.float64),
                [[tuple(k) for k in json.loads(s)] for s in b["view_keys"]],
            )
        )
    return merge_partials(parts, expected_views), replicas, device


# ----------------------------------------------------------------------------------------------- evaluate


@functools.lru_cache(maxsize=32)
def view_gflops(model_config_json: str, size: int) -> float:
    """Multiply-adds (G) of one view; cached because counting traces the model (seconds on a busy CPU)."""
    from pipeline.config import config_from_dict
    from tdn.model.flops import count_flops
    from tdn.model.networks import ModelConfig

    cfg = config_from_dict(ModelConfig, {**json.loads(model_config_json), "pretrained": None})
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
    clips, crops, size, short = cfg.resolved()
    views_per_video = int(index.get("views_per_video") or 0)
    if views_per_video and views_per_video != clips:
        raise ValueError(
            f"{split_dir}: shards hold {views_per_video} clip(s) per video but protocol {cfg.protocol} needs "
            f"{clips}; write evaluation shards with the protocol's clip count"
        )
    start = time.perf_counter()
    loaded = source if isinstance(source, LoadedModel) else load_model(source, tracking_uri)
    model_cfg = config_from_dict(ModelConfig, {**loaded.model_config, "pretrained": None})
    classes = list(index.get("classes") or [])
    if classes and model_cfg.num_classes != len(classes):
        raise ValueError(
            f"model has {model_cfg.num_classes} classes, the shards' dataset {len(classes)}: wrong model or split"
        )
    video, replicas, device = run_inference(loaded, shards, cfg, views_per_video * crops or None)
    wall = time.perf_counter() - start
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
        dataset=str(index.get("dataset", "")),
        split=str(index.get("split", "")),
        index_checksum=str(index["checksum"]),
        num_videos=len(video),
        top1=100.0 * stats["top1"],
        top5=100.0 * stats["top5"],
        mean_class_acc=100.0 * stats["mean_class_acc"],
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
    )
    files = write_outputs(out_dir, result, video, classes or loaded.class_names)
    run_id = ""
    if log_to_mlflow:
        run_id = log_evaluation_run(result, files, tracking_uri, experiment, extra_tags)
        if loaded.model_name:
            _tag_model_version(loaded, result, run_id, tracking_uri)
    log.info(
        "evaluation %s on %s/%s: top1 %.2f top5 %.2f, %.1f ms/video (%d videos, %d replicas, %s)",
        result.model_id, result.dataset, result.split, result.top1, result.top5, result.ms_per_video,
        result.num_videos, replicas, device,
    )  # fmt: skip
    return EvalOutcome(result, video, files, run_id)


def _tag_model_version(loaded: LoadedModel, result: EvalResult, run_id: str, tracking_uri: str | None) -> None:
    """Link the registered version back to its latest evaluation (the run links to the version by tags)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    where = f"{result.dataset}.{result.split}.{result.protocol}"
    client.set_model_version_tag(loaded.model_name, loaded.model_version, f"tdn.eval.{where}.run_id", run_id)
    client.set_model_version_tag(loaded.model_name, loaded.model_version, f"tdn.eval.{where}.top1",
                                 f"{result.top1:.2f}")  # fmt: skip


def with_overrides(cfg: EvalConfig, **changes: Any) -> EvalConfig:
    return dataclasses.replace(cfg, **changes)
