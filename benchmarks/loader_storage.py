"""What the half-resolution neighbour frames change, and what a split weighs (benchmarks/loader_throughput.py)."""

from __future__ import annotations

import torch

from pipeline.loading.config import LoaderConfig
from pipeline.loading.shard_reading import read_index
from pipeline.loading.train_loader import train_loader


def half_resolution_effect(full_dir: str, half_dir: str, size: int) -> dict[str, float]:
    """Same seeds -> same samples, crops and flips; relative L2 change of the S-TDM input avgpool2(x[k+1] - x[k])
    (all four differences; those between two neighbours, 0-1 and 3-4; those touching the full-resolution
    centre frame, 1-2 and 2-3), of the raw differences and of the centre frame."""
    cfg = LoaderConfig(batch_size=8, num_workers=0, input_size=size, decode_threads=2)
    keys = ("pooled", "pooled_neighbours", "pooled_centre", "raw", "centre")
    num = dict.fromkeys(keys, 0.0)
    den = dict.fromkeys(keys, 0.0)
    for (xa, ya), (xb, yb) in zip(
        train_loader(full_dir, cfg, 0, 1, epoch=0, seed=1), train_loader(half_dir, cfg, 0, 1, epoch=0, seed=1)
    ):
        assert torch.equal(ya, yb)
        da, db = xa[:, :, 1:] - xa[:, :, :-1], xb[:, :, 1:] - xb[:, :, :-1]  # (B, T, 4, 3, S, S)
        pa = torch.nn.functional.avg_pool2d(da.flatten(0, 2), 2).unflatten(0, da.shape[:3])
        pb = torch.nn.functional.avg_pool2d(db.flatten(0, 2), 2).unflatten(0, db.shape[:3])
        pairs = {
            "pooled": (pa, pb),
            "pooled_neighbours": (pa[:, :, [0, 3]], pb[:, :, [0, 3]]),
            "pooled_centre": (pa[:, :, [1, 2]], pb[:, :, [1, 2]]),
            "raw": (da, db),
            "centre": (xa[:, :, 2], xb[:, :, 2]),
        }
        for key, (a, b) in pairs.items():
            num[key] += float((a - b).pow(2).sum())
            den[key] += float(a.pow(2).sum())
    return {f"rel_err_{k}": (num[k] / den[k]) ** 0.5 if den[k] else 0.0 for k in keys}


def split_bytes(split_dir: str) -> tuple[int, int]:
    index = read_index(split_dir)
    return sum(s.bytes for s in index.shards), index.num_samples
