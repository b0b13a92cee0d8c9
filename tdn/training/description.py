"""The training run's description on its MLflow page (``mlflow.note.content``, Markdown): what was trained, on
which shards, with which recipe, and what gets registered. RunLog.open sets it with the run's tags.

    train_description(cfg, train, val, world, samples_per_step) -> str
        cfg: TrainConfig; train / val: the splits' ShardIndex (val None: no validation)
"""

from __future__ import annotations

from pipeline.shards.contract import ShardIndex
from tdn.training.config import TrainConfig


def _split(index: ShardIndex, folder: str) -> str:
    return (
        f"**{index.dataset}/{index.split}** ({index.num_videos} videos, {index.num_samples} samples, "
        f"{len(index.classes)} classes; `{folder}`)"
    )


def _schedule(cfg: TrainConfig) -> str:
    o = cfg.optim
    shape = f"lr x {o.gamma:g} at epochs {', '.join(map(str, o.steps))}" if o.schedule == "step" else "cosine"
    warmup = f", {o.warmup_epochs:g} warm-up epoch(s)" if o.warmup_epochs else ""
    return f"{shape}{warmup}"


def train_description(
    cfg: TrainConfig, train: ShardIndex, val: ShardIndex | None, world: int, samples_per_step: int
) -> str:
    m, o, data = cfg.model, cfg.optim, cfg.data
    root = data.shards.rstrip("/")
    train_dir, val_dir = f"{root}/{data.train_split}", f"{root}/{data.val_split}"
    validated = (
        f"validated every {cfg.run.val_every_epochs} epoch(s) on {_split(val, val_dir)}"
        if val is not None
        else "not validated (data.val_split empty)"
    )
    start = (
        f"ImageNet weights `{cfg.init.imagenet}`"
        if cfg.init.imagenet
        else f"the checkpoint `{cfg.init.checkpoint}`"
        if cfg.init.checkpoint
        else "random initialisation"
    )
    lr = o.lr * samples_per_step / o.reference_batch
    registered = (
        f"The best checkpoint by `{cfg.checkpoint.monitor}` ({cfg.checkpoint.mode}) is registered as "
        f"`{cfg.tracking.registered_model}`"
        + (f" (alias `{cfg.tracking.registered_alias}`)." if cfg.tracking.registered_alias else ".")
        if cfg.tracking.registered_model
        else f"The best checkpoint by `{cfg.checkpoint.monitor}` is logged (Artifacts -> checkpoint/), not registered."
    )
    device = "GPU" if cfg.run.use_gpu else "CPU"
    return "\n".join(
        [
            f"Training of TDN `{m.variant}` ({m.arch}, width {m.width:g}, {m.num_segments} segments x 5 frames, "
            f"{cfg.loader.input_size} px crops, {m.num_classes} classes) for {o.epochs} epochs on "
            f"{_split(train, train_dir)}, {validated}; starting from {start}.",
            "",
            f"**Recipe**: SGD lr {o.lr:g} per {o.reference_batch} samples, scaled to {lr:.4g} for {samples_per_step} "
            f"samples per step ({cfg.loader.batch_size} x {world} {device} worker(s)), momentum {o.momentum:g}, "
            f"weight decay {o.weight_decay:g}, {_schedule(cfg)}, dropout {m.dropout:g}, seed {cfg.run.seed}. "
            "Every setting: Parameters, and `config.yaml` among the artifacts.",
            "",
            registered,
            "Charts: `loss/*` and `top1_pct/*` put train and val side by side; `train/*` has the learning rate "
            "and the input pipeline's speed, `system/*` each node's load.",
        ]
    )
