"""Predict at scale: Ray Data batch inference over video paths on evaluation's replica pool.

    ray.data.from_items([{video, uri, part}, ...])             one row per video still to predict
      │ ReplicaPool.map(PredictReplica, batch_size videos)     (tdn/evaluation/replica_pool.py: how many
      │                                                        replicas fit, CPU or GPU, forwarded env)
      │   each replica: the model built once from the object store; per call a Predictor (scoring.py)
      │   decodes its videos (cpus_per_replica threads) and scores them; Grad-CAM files when asked
      ▼ rows: video, part, error, top-k class indices and probabilities, views (+ features)
    the driver (run.py) turns them into PredictionRows, writes each part when its last video is in

Decoding happens inside the replicas, as evaluation's replicas decode their shards' JPEGs: a decoded clip
never crosses the object store (a 10 x 3 view set of an 8-segment 256 px video is 236 MB of uint8).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from tdn.evaluation.model_source import LoadedModel
from tdn.evaluation.protocol import EvalConfig
from tdn.evaluation.replica_pool import ReplicaPool, build_replica_model
from tdn.prediction.scoring import Predictor, PredictSpec, VideoResult
from tdn.prediction.sources import VideoInput


def top_k(probs: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest probabilities, largest first (ties: lower index first)."""
    return np.argsort(-probs, kind="stable")[: min(k, len(probs))]


def result_columns(
    results: Sequence[VideoResult], parts: Sequence[int], k: int, features: bool
) -> dict[str, Any]:
    """A replica's answer as Ray Data columns (fixed widths: an error row has indices -1, probabilities 0)."""
    width = next((len(r.probs) for r in results if r.probs is not None), k)
    k = min(k, width)
    idx = np.full((len(results), k), -1, dtype=np.int64)
    prob = np.zeros((len(results), k), dtype=np.float64)
    for i, r in enumerate(results):
        if r.probs is not None:
            idx[i] = top_k(r.probs, k)
            prob[i] = r.probs[idx[i]]
    out: dict[str, Any] = {
        "video": np.array([r.video.video for r in results], dtype=object),
        "part": np.asarray(parts, dtype=np.int64),
        "error": np.array([r.error for r in results], dtype=object),
        "views": np.array([r.views for r in results], dtype=np.int64),
        "top_index": idx,
        "top_prob": prob,
    }
    if features:
        dim = next((len(r.features) for r in results if r.features is not None), 0)
        out["features"] = np.stack(
            [r.features if r.features is not None else np.zeros(dim, np.float32) for r in results]
        ).astype(np.float32)
    return out


class PredictReplica:
    """One model replica in the actor pool; a batch is rows of (video, uri, part)."""

    def __init__(self, payload: list, spec: PredictSpec, device: str, threads: int) -> None:
        import ray  # here, not at the top: the local engine never imports ray

        torch.set_num_threads(max(1, threads))
        loaded: LoadedModel = ray.get(payload[0])  # wrapped in a list so Ray does not resolve it early
        model = build_replica_model(loaded.model_config, loaded.state_dict, device)
        self.predictor = Predictor(model, spec, device, threads)
        self.k, self.features = spec.top_k, spec.features

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        videos = [VideoInput(str(v), str(u)) for v, u in zip(batch["video"], batch["uri"])]
        results = self.predictor.predict(videos)
        return result_columns(results, [int(p) for p in batch["part"]], self.k, self.features)


def run_on_ray(
    loaded: LoadedModel,
    spec: PredictSpec,
    pool_cfg: EvalConfig,
    device: str,
    todo: Sequence[tuple[VideoInput, int]],
) -> tuple[Iterator[dict[str, Any]], int]:
    """Batches of result columns for ``todo`` ((video, part) pairs) as the replicas finish them, and the
    number of replicas."""
    import ray

    rows = [{"video": v.video, "uri": v.uri, "part": p} for v, p in todo]
    blocks = max(1, -(-len(rows) // pool_cfg.batch_size))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    pool = ReplicaPool(pool_cfg, device, blocks)
    threads = max(1, int(pool_cfg.cpus_per_replica))
    kwargs = {"payload": [ray.put(loaded)], "spec": spec, "device": device, "threads": threads}
    scored = pool.map(ds, PredictReplica, pool_cfg.batch_size, kwargs)
    return scored.iter_batches(batch_format="numpy", batch_size=None), pool.replicas
