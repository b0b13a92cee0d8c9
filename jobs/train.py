"""Train TDN with Ray Train (DDP) from WebDataset shards; checkpoints to local/S3 storage, metrics to MLflow.

    python jobs/train.py --config jobs/configs/ssv1_r50_8f.yaml --data.shards s3://bucket/shards/ssv1 \
        --workers 8 --gpus [--optim.lr 0.02 --model.dropout 0.8 ...] [--resume CHECKPOINT] [--address auto]
    ray job submit --working-dir . -- python jobs/train.py --config jobs/configs/k400_r50_8f.yaml ...

Every field of TrainConfig is a dotted flag. ``--workers``/``--gpus``/``--resume``/``--name``/``--tracking-uri``
are shortcuts for ``--run.workers``, ``--run.use_gpu true``, ``--run.resume``, ``--run.name``,
``--tracking.uri``. The learning rate in a recipe is for ``optim.reference_batch`` samples per step and is
scaled linearly to ``loader.batch_size * workers``. Prints one line per N steps and per epoch, then the final
metrics and checkpoint location as JSON. Exit status 2 for a bad configuration, 1 if training failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # `python jobs/train.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import ConfigError, add_config_arguments, config_from_args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from tdn.training.launcher import fit
    from tdn.training.loop import TrainConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    parser.add_argument("--workers", type=int, default=None, help="number of DDP workers (= --run.workers)")
    parser.add_argument("--gpus", action="store_true", help="one GPU per worker (= --run.use_gpu true)")
    parser.add_argument("--resume", default=None, help="checkpoint file/folder to continue from (= --run.resume)")
    parser.add_argument("--name", default=None, help="run name; the same name again resumes it (= --run.name)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (= --tracking.uri)")
    add_config_arguments(parser, TrainConfig)
    args = parser.parse_args(argv)
    shortcuts = {"run.workers": args.workers, "run.use_gpu": True if args.gpus else None,
                 "run.resume": args.resume, "run.name": args.name, "tracking.uri": args.tracking_uri}
    for dotted, value in shortcuts.items():
        if value is not None:
            setattr(args, f"cfg::{dotted}", str(value))
    try:
        cfg = config_from_args(TrainConfig, args)
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    import ray.train

    try:
        result = fit(cfg, address=args.address)
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    except ray.train.TrainingFailedError as exc:  # restarts (run.max_failures) used up
        print(f"[train] failed: {exc}", file=sys.stderr)
        return 1
    if result.error is not None:
        print(f"[train] failed: {result.error}", file=sys.stderr)
        return 1
    checkpoint = result.checkpoint.path if result.checkpoint is not None else None
    print(json.dumps({"metrics": result.metrics, "checkpoint": checkpoint, "path": result.path}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
