"""Write a motion-only synthetic video dataset in an official layout (pipeline/synthetic/generate.py).

    python -m jobs.synthetic OUT --classes 4 --videos-per-class 8 [--seed 0] [--codec h264|mpeg4|vp9]
        [--layout ucf101|hmdb51|ssv1] [--min-frames 24] [--max-frames 72] [--sizes 96x72,112x84] [--fps 24,30]
        [--motions pan_left,zoom_in]

Ends with a summary: the number of videos and frames, the class names and the output folder (--json: the
same as one JSON line).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

from jobs.cli import Job, Option, Shortcut, finish, run
from pipeline.summary import Item, Summary
from pipeline.synthetic.generate import SyntheticConfig, check_config, generate
from pipeline.synthetic.render import MOTION_CLASSES


def parse_sizes(text: str) -> list[list[int]]:
    """``96x72,112x84`` -> [[96, 72], [112, 84]] (width, height)."""
    try:
        sizes = [[int(w), int(h)] for w, h in (s.lower().split("x") for s in text.split(",") if s)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must look like 96x72,112x84, got {text!r}") from None
    if not sizes:
        raise argparse.ArgumentTypeError("no sizes given")
    return sizes


def with_motion_count(cfg: SyntheticConfig) -> SyntheticConfig:
    """Named motions set the number of classes."""
    return dataclasses.replace(cfg, classes=len(cfg.motions)) if cfg.motions else cfg


def check(cfg: SyntheticConfig) -> None:
    check_config(with_motion_count(cfg))


JOB = Job(
    "synthetic",
    SyntheticConfig,
    __doc__,
    check=check,
    shortcuts=(
        Shortcut("--videos-per-class", "videos_per_class"),
        Shortcut("--min-frames", "min_frames"),
        Shortcut("--max-frames", "max_frames"),
        Shortcut("--sizes", "sizes", parse=parse_sizes, help="WxH[,WxH...], even sides"),
        Shortcut("--size", "sizes", parse=parse_sizes, help="= --sizes"),
        Shortcut("--jpeg-quality", "jpeg_quality"),
        Shortcut(
            "--motions",
            "motions",
            help="comma-separated motion names (default: the first --classes): "
            + ",".join(mc.motion for mc in MOTION_CLASSES),
        ),
    ),
    options=(Option("out", "output folder"),),
    summary=True,
)


def main(argv: Sequence[str] | None = None) -> int:
    return run(JOB, argv, synthetic)


def synthetic(cfg: SyntheticConfig, args: argparse.Namespace) -> int:
    cfg = with_motion_count(cfg)
    videos = generate(cfg, args.out)
    frames = sum(v.num_frames for v in videos)
    data = {
        "out": str(args.out),
        "layout": cfg.layout,
        "videos": len(videos),
        "frames": frames,
        "classes": [mc.ucf_name for mc in cfg.motion_classes()],
    }
    headline = (
        f"{len(videos)} videos, {frames} frames, {len(data['classes'])} classes in the {cfg.layout} layout"
    )
    items = (Item("classes", ", ".join(data["classes"])), Item("output", str(args.out)))
    finish(Summary("synthetic", headline, items, data), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
