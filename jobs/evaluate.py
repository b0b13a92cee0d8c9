"""Evaluate a model on evaluation shards with a pool of Ray replicas; results to files and MLflow.

    python -m jobs.evaluate --model models:/tdn-k400@champion --shards s3://bucket/shards/k400/val \
        --protocol k400_10x3 --replicas 8 --out results/k400 --tracking-uri http://mlflow:5000
    python -m jobs.evaluate --official-checkpoint best.pth.tar --arch resnet50 --segments 8 --num-classes 174 \
        --shards shards/ssv1/val --protocol ssv1x1 --out results/ssv1

--model takes a project checkpoint (path or s3:// URI), models:/name/version or models:/name@alias.
Input size and short side are the model's own (its checkpoint's training config), else the protocol's;
--eval.input_size / --eval.short_side that differ from the model's are used, warned about and recorded.
Every field of EvaluateJob is also a dotted flag (--eval.batch_size 16, --eval.input_size 112) or a YAML
preset key (--config jobs/configs/eval_k400_10x3.yaml).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from jobs.cli import Job, Shortcut, finish, model_source_flags, run, tracking_uri_flag
from pipeline.ray_connect import init_ray
from pipeline.shards.location import split_folder
from tdn.evaluation.batch_inference import check_model_fits, evaluate
from tdn.evaluation.model_source import ModelSource, load_model
from tdn.evaluation.protocol import EvalConfig
from tdn.evaluation.results import DEFAULT_EXPERIMENT
from tdn.evaluation.split import read_split
from tdn.evaluation.summaries import evaluation_summary
from tdn.tracking.mlflow_store import optional_tracking_uri, tracking_off


@dataclass
class EvaluateJob:
    shards: str = (
        ""  # a split folder with index.json, or the shard job's output folder with --split (or s3://)
    )
    split: str = ""  # the split under --shards when it is the shard job's output folder (test, val, ...)
    out: str = "results/eval"  # folder for results.json / .csv and the per-video scores
    tracking_uri: str = ""  # empty: MLFLOW_TRACKING_URI, else the local store; none: no MLflow run
    experiment: str = DEFAULT_EXPERIMENT  # MLflow experiment of the evaluation run
    address: str = ""  # Ray cluster; empty: RAY_ADDRESS or a local cluster
    model: ModelSource = field(default_factory=ModelSource)
    eval: EvalConfig = field(default_factory=EvalConfig)


def check(job: EvaluateJob) -> None:
    job.model.check()
    if not job.shards:
        raise ValueError("--shards (a split folder with index.json, or its parent with --split) is required")
    job.model.check_tracking(job.tracking_uri)


JOB = Job(
    "evaluate",
    EvaluateJob,
    __doc__,
    check=check,
    shortcuts=(
        *model_source_flags(),
        Shortcut("--split", "split"),
        Shortcut("--protocol", "eval.protocol"),
        Shortcut("--replicas", "eval.replicas"),
        Shortcut("--batch-size", "eval.batch_size"),
        tracking_uri_flag(),
    ),
    ray=True,
    summary=True,
)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(JOB, argv, evaluate_job)


def evaluate_job(job: EvaluateJob, args: argparse.Namespace) -> int:
    tracking = optional_tracking_uri(job.tracking_uri)  # None: --tracking-uri none, no MLflow run
    # What the driver can check fails here, in one line, before a Ray cluster is started or joined:
    folder = split_folder(job.shards, job.split)  # either form; the error names the other (and the splits)
    split = read_split(folder)  # a missing, tampered or unreachable index.json (read once, passed on)
    loaded = load_model(job.model, tracking)  # a missing file or registered model, a garbage checkpoint
    check_model_fits(loaded, split)  # classes, segments per clip and windows of the shards
    init_ray(job.address or None)
    logged = not tracking_off(job.tracking_uri)
    outcome = evaluate(loaded, split, job.eval, job.out, tracking, job.experiment, log_to_mlflow=logged)
    if outcome.note:
        print(f"evaluate: {outcome.note}", flush=True)
    finish(evaluation_summary("evaluate", outcome.result, job.out, outcome.run_id, tracking), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
