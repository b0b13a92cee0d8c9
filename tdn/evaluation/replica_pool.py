"""Scoring shards with a pool of model replicas (Ray Data), or in this process.

    shards of one split (shard-*.tar URIs)
      │ ray.data.from_items([{"shard": uri}, ...])        one block per shard
      │ map_batches(_Replica, ActorPoolStrategy(size=n))  each replica loads the model once (from the object
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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline import storage
from tdn.evaluation.metrics import PartialScores, ScoreAccumulator, VideoScores, merge_partials
from tdn.evaluation.model_source import LoadedModel
from tdn.evaluation.protocol import EvalConfig

log = logging.getLogger(__name__)


def loader_config(cfg: EvalConfig, device: str) -> Any:
    from pipeline.loading.config import LoaderConfig

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

    from pipeline.loading.device_batch import make_decoder
    from pipeline.loading.eval_loader import eval_batches
    from pipeline.loading.prefetch import batch_on_device

    # summed batch by batch: (videos, C) in memory, not every view's (views, C) (ScoreAccumulator)
    acc = ScoreAccumulator()
    # loader.decode: device -> the replica decodes each batch's JPEGs on its device (nvJPEG on CUDA)
    decoder = make_decoder(device) if loader_cfg.decode == "device" else None
    with torch.inference_mode():
        for batch in eval_batches(list(shards), loader_cfg, batch_size):
            x = batch_on_device(batch.x, device, decoder)
            p = torch.softmax(model(x).float(), dim=1).cpu().numpy()
            acc.add(batch.video_ids, batch.views, batch.crops, [int(y) for y in batch.labels], p)
    return acc.result(int(model.fc.out_features) if hasattr(model, "fc") else 0)


def build_replica_model(model_config: Mapping[str, Any], state_dict: Mapping[str, Any], device: str) -> Any:
    from pipeline.config import config_from_dict
    from tdn.checkpoints.project import strict_load
    from tdn.model.networks import ModelConfig, build_model_from_config

    cfg = config_from_dict(ModelConfig, model_config)
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
    """S3 endpoint/region of the driver for the replicas; never credentials (pipeline/forwarded_env.py)."""
    from pipeline.forwarded_env import forwardable
    from pipeline.shards.job import DEFAULT_FORWARD_ENV

    return forwardable(DEFAULT_FORWARD_ENV)


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
            log.warning(
                "evaluation: %d CPU replica(s) asked for, %d fit leaving one CPU free", n, max(fit, 1)
            )
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
            part = score_shards(model, shards, loader_config(cfg, device), cfg.batch_size, device)
        finally:
            torch.set_num_threads(threads)
        return merge_partials([part], expected_views), 0, device

    import ray

    replicas = _replica_count(cfg, device, len(shards))
    loader_cfg = loader_config(cfg, device)
    payload = [ray.put(loaded)]
    remote: dict[str, Any] = {"num_gpus": 1} if device == "cuda" else {"num_cpus": cfg.cpus_per_replica}
    env = _forward_env()
    if env:
        remote["runtime_env"] = {"env_vars": env}
    ds = ray.data.from_items([{"shard": s} for s in shards], override_num_blocks=len(shards))
    scored = ds.map_batches(
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
    for b in scored.iter_batches(batch_format="numpy", batch_size=None):
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
