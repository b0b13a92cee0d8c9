"""Multiply-adds and parameters of a model configuration, or the paper's FLOPs tables beside ours.

    python -m jobs.flops --arch resnet50 --segments 8 --size 224 [--variant tdn] [--num-classes 400]
    python -m jobs.flops --table [--size 224]

Counted on a meta-device model, nothing computed (tdn/model/flops.py): multiply-adds per clip of batch 1,
the paper's unit.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from jobs.cli import Job, Shortcut, run
from tdn.model.flops import count_flops, print_table
from tdn.model.networks import ModelConfig, Variant
from tdn.model.resnet import Arch


@dataclass
class FlopsJob:
    arch: Arch = "resnet50"  # backbone
    segments: int = 8  # segments T per clip
    size: int = 224  # input side, pixels
    variant: Variant = "tdn"  # tdn, or an ablation / baseline variant (tsn, ...)
    num_classes: int = 400  # classifier outputs
    width: float = 1.0  # channel width multiplier of the backbone
    table: bool = False  # print our variants beside the paper's FLOPs (Tables 1-3) instead


JOB = Job(
    "flops",
    FlopsJob,
    __doc__,
    shortcuts=(
        Shortcut("--num-classes", "num_classes"),
        Shortcut("--table", "table", const="true", help="print our variants beside the paper's FLOPs"),
    ),
)


def main(argv: Sequence[str] | None = None) -> int:
    return run(JOB, argv, flops)


def flops(job: FlopsJob, args: argparse.Namespace) -> int:
    if job.table:
        print_table(job.size)
        return 0
    cfg = ModelConfig(
        arch=job.arch,
        num_classes=job.num_classes,
        num_segments=job.segments,
        variant=job.variant,
        width=job.width,
    )
    r = count_flops(cfg, job.size)
    print(
        f"{job.variant} {job.arch} {job.segments}x{job.size}^2: {r.gmacs:.2f} GMACs "
        f"(multiply-adds per clip), {r.params / 1e6:.2f} M parameters"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
