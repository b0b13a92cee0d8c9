"""What the driver checks before any training worker starts, so that a bad input costs seconds, not restarts.

    locate_shards(cfg)     data.shards given as a split folder: its parent and data.train_split its name
    check_inputs(cfg)      loader.input_size: a crop the model takes (networks.too_small_for: a TDN needs 33 px);
                           data.shards: each split's index.json (contract reader: schema, checksum, shard names),
                           its classes, segments per clip and windows against the model, the stored frame size
                           against the loader's crop sizes, every listed shard present with its size;
                           init.imagenet / init.checkpoint / run.resume: readable (weights_only) and of the
                           shapes of the model cfg.model describes (checkpointing.check_weights, meta device)
    check_resources(cfg)   a GPU request on a cluster without GPUs: at once, one line;
                           run.workers x resources per worker against the cluster: its autoscaler's maximum
                           when it has one, else the live nodes, waiting up to run.resources_timeout_s for
                           nodes to join (a static cluster that is too small otherwise waits forever)

Each failure is an InputError subclass (pipeline/errors.py) whose one-line message names the file or key.
What only a worker can see (a flipped byte inside a shard, a JPEG that does not decode) ends the run from the
worker instead (tdn/training/failures.py).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence

from pipeline import storage
from pipeline.config import ConfigError
from pipeline.loading.shard_reading import read_index
from pipeline.shards.contract import CorruptShardError
from pipeline.shards.location import is_split, missing_split, parent_and_split
from pipeline.shards.sampling import WINDOW
from tdn.model.networks import too_small_for
from tdn.training.checkpointing import check_weights
from tdn.training.config import TrainConfig


def check_split(split_dir: str, cfg: TrainConfig) -> None:
    """A split's index is valid and fits the model and loader of ``cfg`` (classes, segments per clip, 5-frame
    windows, crops no larger than the stored frames); each listed shard exists with its size."""
    index = read_index(split_dir)
    where = storage.join(split_dir, "index.json")
    num_classes, segments = cfg.model.num_classes, cfg.model.num_segments
    if len(index.classes) != num_classes:
        raise ConfigError(f"{where} has {len(index.classes)} classes, model.num_classes is {num_classes}")
    if index.sampling.num_segments != segments:
        raise ConfigError(
            f"{where}: the shards hold {index.sampling.num_segments} segments per clip, model.num_segments is "
            f"{segments}: train with --model.num_segments {index.sampling.num_segments} or shard with "
            f"--num-segments {segments}"
        )
    if index.sampling.window != WINDOW:
        raise ConfigError(f"{where}: {index.sampling.window}-frame windows, TDN takes {WINDOW}")
    stored = index.resize.short_side  # 0: the sources' own sizes (unknown here)
    for key, size in (
        ("loader.input_size", cfg.loader.input_size),
        ("loader.eval_short_side", cfg.loader.eval_short_side),
    ):
        if stored and size > stored:
            raise ConfigError(
                f"{where}: frames are stored with a shorter side of {stored} px, {key} is {size}: every crop "
                "would be upscaled; shard at a larger short side or lower it"
            )
    for entry in index.shards:
        uri = storage.join(split_dir, entry.name)
        if not storage.exists(uri):
            raise CorruptShardError(f"{uri}: listed in {where} but missing")
        size = storage.file_size(uri)
        if size != entry.bytes:
            raise CorruptShardError(
                f"{uri}: {size} bytes, {where} lists {entry.bytes} (truncated or replaced)"
            )


def check_inputs(cfg: TrainConfig) -> None:
    """The crop size, the shards and the weights files of ``cfg`` (absolute paths:
    launcher.with_absolute_paths)."""
    too_small = too_small_for(cfg.model, cfg.loader.input_size)
    if too_small:
        raise ConfigError(f"loader.input_size {cfg.loader.input_size}: {too_small}")
    if not cfg.data.shards:
        raise ConfigError("data.shards is empty: pass --data.shards DIR (the shard job's output folder)")
    if not storage.exists(cfg.data.shards):
        raise FileNotFoundError(f"data.shards: {cfg.data.shards} does not exist")
    flags = {cfg.data.train_split: "--split", cfg.data.val_split: "--data.val_split"}
    for split in (cfg.data.train_split, cfg.data.val_split):
        if split:
            folder = storage.join(cfg.data.shards, split)
            if not is_split(folder):  # name the splits that are there, and the flag that picks one
                raise missing_split(folder, cfg.data.shards, flags[split])
            check_split(folder, cfg)
    check_weights(cfg)


def locate_shards(cfg: TrainConfig) -> TrainConfig:
    """data.shards given as the training split folder itself (evaluate's --shards form): its parent, with
    data.train_split its name; the validation split is its sibling data.val_split."""
    shards, split = parent_and_split(cfg.data.shards, cfg.data.train_split)
    if (shards, split) == (cfg.data.shards, cfg.data.train_split):
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, shards=shards, train_split=split))


def resources_per_worker(cfg: TrainConfig) -> dict[str, float]:
    return {"CPU": cfg.run.cpus_per_worker, **({"GPU": 1.0} if cfg.run.use_gpu else {})}


def workers_fitting(nodes: Sequence[Mapping[str, float]], per_worker: Mapping[str, float]) -> int:
    """How many workers of ``per_worker`` resources the nodes hold in all (a worker lives on one node)."""
    return sum(min(math.floor(node.get(k, 0.0) / v + 1e-9) for k, v in per_worker.items()) for node in nodes)


def _describe(nodes: Sequence[Mapping[str, float]], per_worker: Mapping[str, float]) -> str:
    return ", ".join(
        "{" + ", ".join(f"{k}: {node.get(k, 0.0):g}" for k in per_worker) + "}" for node in nodes
    )


NO_GPU_HINT = "train on CPUs without --gpus (run.use_gpu=false), or join a cluster with GPU nodes (--address)"


def check_resources(cfg: TrainConfig) -> None:
    """Raise ConfigError unless the connected Ray cluster can hold ``run.workers`` workers (see module doc)."""
    import ray
    from ray._private.state import state as ray_state

    per_worker, workers = resources_per_worker(cfg), cfg.run.workers
    request = f"run.workers={workers} x {dict(per_worker)} per worker"
    maximum = ray_state.get_max_resources_from_cluster_config()  # None without an autoscaler
    if maximum and per_worker.get("GPU") and not maximum.get("GPU"):
        raise ConfigError(
            f"{request}: the Ray cluster has no GPU, and its autoscaler adds none; {NO_GPU_HINT}"
        )
    if not maximum and per_worker.get("GPU") and not ray.cluster_resources().get("GPU"):
        # at once, not after run.resources_timeout_s: waiting for GPU nodes on a cluster that has none and no
        # autoscaler to add them only ended in "lower --workers" (issue 25)
        raise ConfigError(f"{request}: the Ray cluster has no GPU; {NO_GPU_HINT}")
    if maximum:
        short = {k: v * workers for k, v in per_worker.items() if v * workers > maximum.get(k, 0)}
        if short:
            raise ConfigError(
                f"{request}: the cluster's autoscaler allows at most "
                f"{ {k: maximum.get(k, 0) for k in short} } in all"
            )
        return  # the autoscaler adds nodes while Ray Train waits for them
    deadline = time.monotonic() + cfg.run.resources_timeout_s
    while True:
        nodes = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
        if workers_fitting(nodes, per_worker) >= workers:
            return
        if time.monotonic() >= deadline:
            raise ConfigError(
                f"{request}: the cluster's nodes ({_describe(nodes, per_worker)}) hold only "
                f"{workers_fitting(nodes, per_worker)} such workers (waited {cfg.run.resources_timeout_s:g} s "
                "for more nodes: run.resources_timeout_s); lower --workers or run.cpus_per_worker"
            )
        time.sleep(1.0)
