"""Evaluate a model on evaluation shards with a pool of Ray replicas; results to files and MLflow.

    python jobs/evaluate.py --model models:/tdn-k400@champion --shards s3://bucket/shards/k400/val \
        --protocol k400_10x3 --replicas 8 --out results/k400 --tracking-uri http://mlflow:5000
    python jobs/evaluate.py --official-checkpoint best.pth.tar --arch resnet50 --segments 8 --num-classes 174 \
        --shards shards/ssv1/val --protocol ssv1x1 --out results/ssv1

--model takes a project checkpoint (path or s3:// URI), models:/name/version or models:/name@alias.
Input size and short side are the model's own (its checkpoint's training config), else the protocol's;
--eval.input_size / --eval.short_side that differ from the model's are used, warned about and recorded.
Every field of EvaluateJob is also a dotted flag (--eval.batch_size 16, --eval.input_size 112) or a YAML
preset key (--config jobs/configs/eval_k400_10x3.yaml).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # `python jobs/evaluate.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.cli import Job, Shortcut, run
from pipeline.ray_connect import init_ray
from tdn.evaluation.batch_inference import evaluate, read_split_index
from tdn.evaluation.model_source import ModelSource, load_model
from tdn.evaluation.protocol import EvalConfig
from tdn.evaluation.results import DEFAULT_EXPERIMENT
from tdn.tracking.mlflow_store import resolve_tracking_uri


@dataclass
class EvaluateJob:
    shards: str = ""  # split folder with index.json (local or s3://)
    out: str = "results/eval"  # folder for results.json / .csv and the per-video scores
    tracking_uri: str = ""  # empty: MLFLOW_TRACKING_URI, else no MLflow run
    experiment: str = DEFAULT_EXPERIMENT  # MLflow experiment of the evaluation run
    address: str = ""  # Ray cluster; empty: RAY_ADDRESS or a local cluster
    model: ModelSource = field(default_factory=ModelSource)
    eval: EvalConfig = field(default_factory=EvalConfig)


def check(job: EvaluateJob) -> None:
    job.model.check()
    if not job.shards:
        raise ValueError("--shards (a split folder with index.json) is required")


JOB = Job("evaluate", EvaluateJob, __doc__, check=check, shortcuts=(
    Shortcut("--model", "model.uri"),
    Shortcut("--official-checkpoint", "model.official"),
    Shortcut("--arch", "model.arch"),
    Shortcut("--segments", "model.num_segments"),
    Shortcut("--num-classes", "model.num_classes"),
    Shortcut("--protocol", "eval.protocol"),
    Shortcut("--replicas", "eval.replicas"),
    Shortcut("--batch-size", "eval.batch_size"),
    Shortcut("--tracking-uri", "tracking_uri"),
), ray=True)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(JOB, argv, evaluate_job)


def evaluate_job(job: EvaluateJob, args: argparse.Namespace) -> int:
    tracking = resolve_tracking_uri(job.tracking_uri)
    # What the driver can check fails here, in one line, before a Ray cluster is started or joined:
    read_split_index(job.shards)  # a missing, tampered or unreachable index.json
    loaded = load_model(job.model, tracking)  # a missing file or registered model, a garbage checkpoint
    init_ray(job.address or None)
    outcome = evaluate(loaded, job.shards, job.eval, job.out, tracking, job.experiment)
    print(json.dumps({**outcome.result.to_dict(), "run_id": outcome.run_id, "out": job.out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
