"""Multiply-adds and parameters of a model configuration, and the paper's FLOPs tables beside ours.

    python -m jobs.flops --arch resnet50 --segments 8 --size 224 [--variant tdn]
    python -m jobs.flops --table

Counted with ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls; it reports 2 FLOPs per
multiply-add, we print multiply-adds = flops / 2, the paper's unit) on a meta-device model, so nothing is
actually computed. Our temporal conv is shifted multiply-adds rather than a Conv1d, so its 3 multiply-adds
per output element are added explicitly (the released Conv1d is counted by FlopCounterMode). Pooling,
BN and other element-wise ops are not counted, as in the paper's figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from tdn.model.networks import ModelConfig, TDNNet
from tdn.model.resnet import Arch
from tdn.model.temporal_modules import TemporalConv


@dataclass(frozen=True)
class FlopsReport:
    gmacs: float  # multiply-adds per clip (batch 1), in G
    params: int


def count_flops(cfg: ModelConfig, size: int = 224) -> FlopsReport:
    """Multiply-adds (G) of one clip (N = 1, T = cfg.num_segments, size x size) and the parameter count."""
    with torch.device("meta"):
        model = TDNNet(cfg).eval()
    params = sum(p.numel() for p in model.parameters())
    extra = [0]

    def temporal_macs(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _: torch.Tensor) -> None:
        extra[0] += 3 * inputs[0].numel()

    hooks = [m.register_forward_hook(temporal_macs) for m in model.modules() if isinstance(m, TemporalConv)]
    x = torch.empty(1, cfg.num_segments, 5, 3, size, size, device="meta")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    for h in hooks:
        h.remove()
    return FlopsReport(gmacs=(counter.get_total_flops() / 2 + extra[0]) / 1e9, params=params)


# Rows of the paper's tables: (label, config overrides, published GFLOPs or None).
_TABLE_ROWS: list[tuple[str, str, dict, float | None]] = [
    ("Table 1e", "TSN (no temporal modules)", {"variant": "tsn"}, 33.0),
    ("Table 1e", "temporal conv only (baseline)", {"variant": "tconv"}, None),
    ("Table 1e", "S-TDM stages 1-2 + tconv", {"variant": "stdm"}, None),
    ("Table 1e", "S-TDM stage 1 + tconv", {"variant": "stdm", "s_tdm_stages": 1}, None),
    ("Table 1e", "L-TDM stages 3-5", {"variant": "ltdm"}, None),
    ("Table 1e", "TDN (S-TDM 1-2, L-TDM 3-5)", {}, 36.0),
    ("Table 1a", "S: concat, L: avg", {"s_tdm_input": "stack", "l_tdm_operator": "avg"}, 36.2),
    ("Table 1a", "S: concat, L: diff", {"s_tdm_input": "stack"}, 36.2),
    ("Table 1a", "S: diff, L: avg", {"l_tdm_operator": "avg"}, 35.9),
    ("Table 1a", "S: diff, L: diff", {}, 35.9),
    ("Table 1d", "S stage 1, L stages 2-5", {"s_tdm_stages": 1, "l_tdm_stages": (2, 3, 4, 5)}, 35.0),
    ("Table 1d", "S stages 1-2, L stages 3-5", {}, 36.0),
    ("Table 1d", "S stages 1-3, L stages 4-5", {"s_tdm_stages": 3, "l_tdm_stages": (4, 5)}, 38.0),
]
_TABLE_MODELS: list[tuple[str, Arch, int, float]] = [
    ("TDN-R50 8f", "resnet50", 8, 36.0),
    ("TDN-R50 16f", "resnet50", 16, 72.0),
    ("TDN-R101 8f", "resnet101", 8, 66.0),
    ("TDN-R101 16f", "resnet101", 16, 132.0),
]


def print_table(size: int = 224) -> None:
    print(f"Ablations, ResNet-50, 8 frames, {size}x{size}, 1 clip (GFLOPs = G multiply-adds)")
    print(f"{'table':9} {'setting':34} {'ours':>8} {'paper':>6} {'diff':>7} {'params':>8}")
    for table, label, overrides, paper in _TABLE_ROWS:
        r = count_flops(ModelConfig(arch="resnet50", num_classes=174, num_segments=8, **overrides), size)
        diff = f"{100 * (r.gmacs / paper - 1):+.1f}%" if paper else "-"
        print(f"{table:9} {label:34} {r.gmacs:8.2f} {paper or '-':>6} {diff:>7} {r.params / 1e6:7.2f}M")
    print(f"\nTable 2/3 models ({size}x{size}, 1 clip, 400 classes)")
    for label, arch, t, paper in _TABLE_MODELS:
        r = count_flops(ModelConfig(arch=arch, num_classes=400, num_segments=t), size)
        print(
            f"{'':9} {label:34} {r.gmacs:8.2f} {paper:6.0f} {100 * (r.gmacs / paper - 1):+6.1f}% "
            f"{r.params / 1e6:7.2f}M"
        )
