"""Validation during training: top-1/top-5 % and loss of the val split each validated epoch, and the last
epoch's per-class accuracy table.

    validate(trainer, ctx) -> ({val/top1_pct, val/top5_pct, val/loss}, per-class counts)
    input_example(ctx, path) -> a real clip as the registered model's input example (.npz)
    write_per_class_csv(path, classes, counts)  -> per_class_accuracy.csv (class_index, class_name, samples,
                                                   top1_pct, top5_pct), logged to the training run
"""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist
from torch import nn

from pipeline.loading.device_batch import make_decoder
from pipeline.loading.eval_loader import eval_batches
from pipeline.loading.prefetch import batch_on_device
from pipeline.loading.shard_reading import indexed_shards
from tdn.tracking.model_export import InputExample
from tdn.training.metric_names import VAL_LOSS, VAL_TOP1_PCT, VAL_TOP5_PCT
from tdn.training.trainer import Trainer
from tdn.training.worker import WorkerContext


@torch.no_grad()
def validate(trainer: Trainer, ctx: WorkerContext) -> tuple[dict[str, float], torch.Tensor]:
    """Top-1/top-5 (percent) and loss over the val split's samples (each a centre clip), shards split over
    ranks, counts all-reduced. (Per sample: a split with several views per video counts each view;
    tdn/evaluation/batch_inference.py does the per-video aggregation.)

    Returns (val/* metrics, per-class counts (num_classes, 3): samples, top-1 hits, top-5 hits); the number
    of samples is ``counts[:, 0].sum()`` (a counter: the run's tdn.val_samples tag, never a metric).
    """
    cfg, val_dir = ctx.cfg, ctx.val_dir
    k = min(5, cfg.model.num_classes)
    counts = torch.zeros(cfg.model.num_classes, 3, dtype=torch.float64)
    loss_sum = torch.zeros(1, dtype=torch.float64)
    shards = indexed_shards(val_dir)[ctx.rank :: ctx.world]  # whole shards per rank; uneven shares are fine
    decoder = make_decoder(ctx.device) if cfg.loader.decode == "device" else None
    for batch in eval_batches(shards, cfg.loader, cfg.loader.batch_size) if shards else []:
        x, y = batch_on_device(batch.x, ctx.device, decoder), batch.labels.to(ctx.device)
        logits = trainer.eval_step(x)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        topk = logits.topk(k, dim=1).indices
        hit1 = (topk[:, 0] == y).double().cpu()
        hit5 = (topk == y[:, None]).any(dim=1).double().cpu()
        counts.index_add_(0, y.cpu(), torch.stack([torch.ones_like(hit1), hit1, hit5], dim=1))
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(counts)
        dist.all_reduce(loss_sum)
    n = float(counts[:, 0].sum())
    if n == 0:
        raise ValueError(f"{val_dir}: no validation samples were read")
    metrics = {
        VAL_TOP1_PCT: 100.0 * float(counts[:, 1].sum()) / n,
        VAL_TOP5_PCT: 100.0 * float(counts[:, 2].sum()) / n,
        VAL_LOSS: float(loss_sum) / n,
    }
    return metrics, counts


def write_per_class_csv(path: str, classes: list[str], counts: torch.Tensor) -> None:
    """One row per class: samples, top-1 % and top-5 % (empty-class rows: nan)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("class_index,class_name,samples,top1_pct,top5_pct\n")
        for i, name in enumerate(classes):
            n = float(counts[i, 0])
            top1 = 100.0 * float(counts[i, 1]) / n if n else float("nan")
            top5 = 100.0 * float(counts[i, 2]) / n if n else float("nan")
            f.write(f'{i},"{name.replace(chr(34), chr(34) * 2)}",{int(n)},{top1:.4f},{top5:.4f}\n')


def input_example(ctx: WorkerContext, path: str) -> str:
    """One real clip of the run's data (the val split's first sample, else the train split's), centre view,
    as the loaders feed the model, saved as the registered model's input example; returns ``path``, or ""
    when no sample could be read."""
    folder = ctx.val_dir or ctx.train_dir
    cfg = dataclasses.replace(
        ctx.cfg.loader, num_workers=0, decode="cpu", output_dtype="float32", eval_crops=1
    )
    shards = indexed_shards(folder)[:1]
    batch = next(iter(eval_batches(shards, cfg, batch_size=1)), None) if shards else None
    if batch is None or not isinstance(batch.x, torch.Tensor):
        return ""
    label = int(batch.labels[0])
    name = ctx.classes[label] if 0 <= label < len(ctx.classes) else "unlabelled"
    source = f"{ctx.index.dataset}/{os.path.basename(folder.rstrip('/'))} video {batch.video_ids[0]} ({name})"
    InputExample(batch.x[:1].numpy(), source).save(path)
    return path
