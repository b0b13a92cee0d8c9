"""Convert a checkpoint released with the paper (TDN ``main.py``) to this project's checkpoint format.

    python -m jobs.convert_checkpoint TDN_K400_R50_8f.pth.tar k400_r50_8f.pt --arch resnet50 --segments 8 \
        --num-classes 400 [--class-names classes.txt]

The released file does not record its shape, hence ``--arch``/``--segments``/``--num-classes``; a file that
does not fit them exits with status 2 and one line naming the missing keys, unexpected keys and shape
mismatches. The result loads with ``tdn.checkpoints.project.load_model_checkpoint`` and evaluates as
``jobs/evaluate.py --model k400_r50_8f.pt``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from jobs.cli import Job, Option, Shortcut, run
from pipeline import storage
from tdn.checkpoints.official import load_official_checkpoint
from tdn.checkpoints.project import CheckpointError, save_checkpoint


@dataclass
class ConvertJob:
    # The released file does not record its shape: these three are required.
    arch: Literal["resnet50", "resnet101"] | None = None  # backbone of the released checkpoint (required)
    segments: int = 0  # segments T it was trained with (required)
    num_classes: int = 0  # classes of its classifier (required)
    dropout: float = 0.5  # dropout before the classifier, recorded in the converted checkpoint
    class_names: str = ""  # text file, one class name per line (optional)


def check(job: ConvertJob) -> None:
    if job.arch is None or job.segments < 1 or job.num_classes < 1:
        raise ValueError("--arch, --segments and --num-classes are required (the released file does not say)")


JOB = Job(
    "convert_checkpoint",
    ConvertJob,
    __doc__,
    check=check,
    input_errors=(CheckpointError,),
    shortcuts=(
        Shortcut("--num-classes", "num_classes"),
        Shortcut("--class-names", "class_names", help="text file, one class name per line (optional)"),
    ),
    options=(
        Option("input", "official checkpoint (.pth / .pth.tar), local path or s3:// URI"),
        Option("output", "project checkpoint to write, local path or s3:// URI"),
    ),
)


def main(argv: Sequence[str] | None = None) -> int:
    return run(JOB, argv, convert)


def convert(job: ConvertJob, args: argparse.Namespace) -> int:
    assert job.arch is not None  # check()
    model = load_official_checkpoint(args.input, job.arch, job.segments, job.num_classes, job.dropout)
    names: list[str] = []
    if job.class_names:
        names = [line.strip() for line in storage.read_text(job.class_names).splitlines() if line.strip()]
        if len(names) != job.num_classes:
            raise CheckpointError(f"{job.class_names}: {len(names)} names for {job.num_classes} classes")
    save_checkpoint(args.output, model, model.config, names)
    print(f"wrote {args.output} ({job.arch}, {job.segments} segments, {job.num_classes} classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
