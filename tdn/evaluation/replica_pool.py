"""Scoring shards with a pool of model replicas (Ray Data), or in this process.

    EvalSplit (index read once) + EvalProtocol (resolved once; both from batch_inference.evaluate)
      │ loader_config(cfg, protocol, device)              crops, input size, short side of the protocol
      │ ray.data.from_items([{"shard": uri, "entry": ShardEntry JSON}, ...])
      │                                                   one block per shard; each shard carries its
      │                                                   index entry, so no replica reads index.json
      │ ReplicaPool.map(_Replica)  (ActorPoolStrategy(n)) each replica loads the model once (from the object
      │                                                   store), runs eval_batches over its shards:
      │     x (B, T, 5, 3, S, S) -> logits (B, C) -> softmax -> sums per video id -> PartialScores rows
      ▼ driver: merge_partials -> VideoScores (V, C) = mean over each video's clips x crops

A video's views may sit in different shards and be scored by different replicas: replicas return per-video
*sums* with the (view, crop) keys they saw, and the driver adds them up, checking that every video got exactly
clips x crops views, none twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline import storage
from pipeline.config import config_from_dict
from pipeline.forwarded_env import runtime_env
from pipeline.loading.config import LoaderConfig
from pipeline.loading.device_batch import make_decoder
from pipeline.loading.eval_loader import eval_batches
from pipeline.loading.prefetch import batch_on_device
from pipeline.shards.contract import ShardEntry
from tdn.checkpoints.project import strict_load
from tdn.evaluation.metrics import PartialScores, ScoreAccumulator, VideoScores, merge_partials
from tdn.evaluation.model_source import LoadedModel
from tdn.evaluation.protocol import EvalConfig, EvalProtocol
from tdn.evaluation.split import EvalSplit
from tdn.model.networks import ModelConfig, TDNNet, build_model_from_config
from tdn.training.progress import format_duration

log = logging.getLogger(__name__)


def loader_config(cfg: EvalConfig, protocol: EvalProtocol, device: str) -> LoaderConfig:
    """The evaluation loader's settings: the protocol's crops and sizes, the replica's threads and device."""
    return LoaderConfig(
        input_size=protocol.input_size,
        eval_short_side=protocol.short_side,
        eval_crops=protocol.crops,
        num_workers=cfg.loader_workers,
        decode_threads=max(1, int(cfg.cpus_per_replica)),
        pin_memory=device == "cuda",
        # on a GPU, ship uint8 frames (4x fewer bytes) and normalise them there
        output_dtype="uint8" if device == "cuda" else "float32",
    )


def score_shards(
    model: nn.Module,
    shards: Sequence[str],
    entries: Sequence[ShardEntry],
    loader_cfg: LoaderConfig,
    batch_size: int,
    device: str = "cpu",
) -> PartialScores:
    """Softmax of every view in ``shards`` summed per video (one replica's work, also usable without Ray);
    ``entries`` are the shards' index.json entries (same order), which each tar is verified against."""
    # summed batch by batch: (videos, C) in memory, not every view's (views, C) (ScoreAccumulator)
    acc = ScoreAccumulator()
    # loader.decode: device -> the replica decodes each batch's JPEGs on its device (nvJPEG on CUDA)
    decoder = make_decoder(device) if loader_cfg.decode == "device" else None
    with torch.inference_mode():
        for batch in eval_batches(list(shards), loader_cfg, batch_size, entries=entries):
            x = batch_on_device(batch.x, device, decoder)
            p = torch.softmax(model(x).float(), dim=1).cpu().numpy()
            acc.add(batch.video_ids, batch.views, batch.crops, [int(y) for y in batch.labels], p)
    fc = getattr(model, "fc", None)
    return acc.result(int(fc.out_features) if isinstance(fc, nn.Linear) else 0)


def build_replica_model(
    model_config: Mapping[str, Any], state_dict: Mapping[str, Any], device: str
) -> TDNNet:
    cfg = config_from_dict(ModelConfig, model_config)
    model = build_model_from_config(cfg)
    strict_load(model, state_dict, "evaluation replica")
    return model.to(device).eval()


class _Replica:
    """One model replica in the Ray Data actor pool; a batch is a list of shards (URI + index entry JSON)."""

    def __init__(
        self, payload: list, loader_cfg: LoaderConfig, batch_size: int, device: str, threads: int
    ) -> None:
        import ray  # here, not at the top: only Ray workers and the ray engine need it (engine=local: no ray)

        torch.set_num_threads(max(1, threads))
        loaded: LoadedModel = ray.get(payload[0])  # wrapped in a list so Ray does not resolve it early
        self.device = device
        self.model = build_replica_model(loaded.model_config, loaded.state_dict, device)
        self.loader_cfg = loader_cfg
        self.batch_size = batch_size
        storage.register_webdataset_s3()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        uris = [str(u) for u in batch["shard"]]
        entries = [ShardEntry.from_json(e, u) for e, u in zip(batch["entry"], uris)]
        part = score_shards(self.model, uris, entries, self.loader_cfg, self.batch_size, self.device)
        return {
            "video_id": np.array(part.video_ids, dtype=object),
            "label": part.labels,
            "sums": part.sums.astype(np.float64),
            "view_keys": np.array([json.dumps(k) for k in part.view_keys], dtype=object),
        }


@dataclass
class ScoringProgress:
    """The evaluation's progress line, every ``interval_s`` and at the end (Ray Data's own is filtered):
    ``[evaluate] 12/40 shards, 310/1000 videos, 5.2 videos/s, ETA 2:13``."""

    shards: int
    videos: int
    interval_s: float = 10.0
    done_shards: int = 0
    done_videos: int = 0  # videos with at least one view scored (a video's views may span shards)
    started: float = field(default_factory=time.monotonic)
    printed: float = field(default_factory=time.monotonic)

    def shard_done(self, videos: int) -> None:
        self.done_shards += 1
        self.done_videos = min(self.videos, self.done_videos + videos)
        now = time.monotonic()
        if now - self.printed < self.interval_s and self.done_shards < self.shards:
            return
        self.printed = now
        rate = self.done_videos / max(now - self.started, 1e-9)
        eta = (self.videos - self.done_videos) / rate if rate > 0 else 0.0
        print(
            f"[evaluate] {self.done_shards}/{self.shards} shards, {self.done_videos}/{self.videos} videos, "
            f"{rate:.1f} videos/s, ETA {format_duration(eta)}",
            flush=True,
        )


def pick_device(cfg: EvalConfig) -> str:
    if cfg.device != "auto":
        return cfg.device
    if cfg.engine == "local":
        return "cuda" if torch.cuda.is_available() else "cpu"
    import ray  # here, not at the top: engine=local runs without importing ray

    return "cuda" if ray.cluster_resources().get("GPU", 0) >= 1 else "cpu"


def _forward_env() -> dict[str, str]:
    """S3 endpoint/region and MLflow settings of the driver for the replicas; never credentials."""
    return runtime_env().get("env_vars", {})


def _replica_count(cfg: EvalConfig, device: str, num_shards: int) -> int:
    """Replicas that fit: on CPU, one CPU is left free for Ray Data's own tasks (a full pool deadlocks)."""
    import ray  # here, not at the top: engine=local runs without importing ray

    n = min(cfg.replicas, num_shards)
    res = ray.cluster_resources()
    if device == "cuda":
        n = min(n, int(res.get("GPU", 0)))
    else:
        fit = int((res.get("CPU", 1) - 1) // cfg.cpus_per_replica)
        if fit < n:
            log.warning(
                "evaluation: %d CPU replica(s) asked for, %d fit leaving one CPU free", n, max(fit, 1)
            )
        n = min(n, fit)
    return max(n, 1)


class ReplicaPool:
    """The actor pool of model replicas on the cluster, shared by evaluation (shards) and predict (videos):
    how many fit (one CPU left free on CPU clusters), what each reserves, the environment they get."""

    def __init__(self, cfg: EvalConfig, device: str, work_items: int) -> None:
        self.replicas = _replica_count(cfg, device, work_items)
        self.remote: dict[str, Any] = (
            {"num_gpus": 1} if device == "cuda" else {"num_cpus": cfg.cpus_per_replica}
        )
        env = _forward_env()
        if env:
            self.remote["runtime_env"] = {"env_vars": env}

    def map(self, ds: Any, replica: type, batch_size: int, kwargs: Mapping[str, Any]) -> Any:
        """``ds.map_batches(replica, ...)`` on the pool: each actor built once with ``kwargs``, handed
        ``batch_size`` rows per call."""
        import ray  # here, not at the top: engine=local runs without importing ray

        return ds.map_batches(
            replica,
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=self.replicas),
            fn_constructor_kwargs=dict(kwargs),
            **self.remote,
        )


def run_inference(
    loaded: LoadedModel, split: EvalSplit, cfg: EvalConfig, protocol: EvalProtocol
) -> tuple[VideoScores, int, str]:
    """Score all shards of ``split`` on the Ray cluster (or here), each video at ``protocol``'s views;
    returns (video scores, replicas used, device)."""
    device = pick_device(cfg)
    loader_cfg = loader_config(cfg, protocol, device)
    if cfg.engine == "local":
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, int(cfg.cpus_per_replica)))
        try:
            model = build_replica_model(loaded.model_config, loaded.state_dict, device)
            part = score_shards(model, split.uris, split.entries, loader_cfg, cfg.batch_size, device)
        finally:
            torch.set_num_threads(threads)
        return merge_partials([part], protocol.views_per_video), 0, device

    import ray  # here, not at the top: engine=local runs without importing ray

    rows = [{"shard": u, "entry": e.to_json()} for u, e in zip(split.uris, split.entries)]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    pool = ReplicaPool(cfg, device, len(split.uris))
    scored = pool.map(
        ds,
        _Replica,
        1,
        {
            "payload": [ray.put(loaded)],
            "loader_cfg": loader_cfg,
            "batch_size": cfg.batch_size,
            "device": device,
            "threads": max(1, int(cfg.cpus_per_replica)),
        },
    )
    replicas = pool.replicas
    parts: list[PartialScores] = []
    progress = ScoringProgress(len(split.uris), sum(e.videos for e in split.entries))
    for b in scored.iter_batches(batch_format="numpy", batch_size=None):
        progress.shard_done(len(set(b["video_id"])))
        if len(b["video_id"]) == 0:
            continue
        parts.append(
            PartialScores.from_view_keys(
                [str(v) for v in b["video_id"]],
                np.asarray(b["label"], dtype=np.int64),
                np.asarray(b["sums"], dtype=np.float64),
                [[tuple(k) for k in json.loads(s)] for s in b["view_keys"]],
            )
        )
    return merge_partials(parts, protocol.views_per_video), replicas, device
