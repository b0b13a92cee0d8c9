"""Validation during training: top-1/top-5 % and loss of the val split each validated epoch, and the last
epoch's per-class accuracy table.

    validate(model, val_dir, cfg, device, rank, world) -> ({val/top1_pct, val/top5_pct, val/loss}, counts)
    write_per_class_csv(path, classes, counts)  -> per_class_accuracy.csv (class_index, class_name, samples,
                                                   top1_pct, top5_pct), logged to the training run
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from pipeline.loading.device_batch import make_decoder
from pipeline.loading.eval_loader import eval_batches
from pipeline.loading.prefetch import batch_on_device
from pipeline.loading.shard_reading import indexed_shards
from tdn.training.config import TrainConfig
from tdn.training.metric_names import VAL_LOSS, VAL_TOP1_PCT, VAL_TOP5_PCT


@torch.no_grad()
def validate(
    model: nn.Module, val_dir: str, cfg: TrainConfig, device: torch.device, rank: int, world: int
) -> tuple[dict[str, float], torch.Tensor]:
    """Top-1/top-5 (percent) and loss over the val split's samples (each a centre clip), shards split over
    ranks, counts all-reduced. (Per sample: a split with several views per video counts each view;
    tdn/evaluation/batch_inference.py does the per-video aggregation.)

    Returns (val/* metrics, per-class counts (num_classes, 3): samples, top-1 hits, top-5 hits); the number
    of samples is ``counts[:, 0].sum()`` (a counter: the run's tdn.val_samples tag, never a metric).
    """
    model.eval()
    cuda = device.type == "cuda"
    k = min(5, cfg.model.num_classes)
    counts = torch.zeros(cfg.model.num_classes, 3, dtype=torch.float64)
    loss_sum = torch.zeros(1, dtype=torch.float64)
    shards = indexed_shards(val_dir)[rank::world]  # whole shards per rank; uneven shares are fine
    decoder = make_decoder(device) if cfg.loader.decode == "device" else None
    for batch in eval_batches(shards, cfg.loader, cfg.loader.batch_size) if shards else []:
        x, y = batch_on_device(batch.x, device, decoder), batch.labels.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and cfg.run.amp):
            logits = model(x).float()
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        topk = logits.topk(k, dim=1).indices
        hit1 = (topk[:, 0] == y).double().cpu()
        hit5 = (topk == y[:, None]).any(dim=1).double().cpu()
        yc = y.cpu()
        counts.index_add_(0, yc, torch.stack([torch.ones_like(hit1), hit1, hit5], dim=1))
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
