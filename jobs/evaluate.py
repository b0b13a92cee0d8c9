"""Evaluate a model on evaluation shards with a pool of Ray replicas; results to files and MLflow.

    python jobs/evaluate.py --model models:/tdn-k400@champion --shards s3://bucket/shards/k400/val \
        --protocol k400_10x3 --replicas 8 --out results/k400 --tracking-uri http://mlflow:5000
    python jobs/evaluate.py --official-checkpoint best.pth.tar --arch resnet50 --segments 8 --num-classes 174 \
        --shards shards/ssv1/val --protocol ssv1x1 --out results/ssv1

--model takes a project checkpoint (path or s3:// URI), models:/name/version or models:/name@alias.
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

from pipeline.config import ConfigError, add_config_aliases, add_config_arguments, config_from_args
from pipeline.ray_connect import init_ray
from tdn.evaluation.batch_inference import EvalConfig, ModelSource, evaluate
from tdn.evaluation.results import DEFAULT_EXPERIMENT


@dataclass
class EvaluateJob:
    shards: str = ""  # split folder with index.json (local or s3://)
    out: str = "results/eval"
    tracking_uri: str = ""  # empty: MLFLOW_TRACKING_URI, else no MLflow run
    experiment: str = DEFAULT_EXPERIMENT
    address: str = ""  # Ray cluster; empty: RAY_ADDRESS or a local cluster
    model: ModelSource = field(default_factory=ModelSource)
    eval: EvalConfig = field(default_factory=EvalConfig)


# friendly flag -> dotted config key
ALIASES = {
    "--model": "model.uri",
    "--official-checkpoint": "model.official",
    "--arch": "model.arch",
    "--segments": "model.num_segments",
    "--num-classes": "model.num_classes",
    "--protocol": "eval.protocol",
    "--replicas": "eval.replicas",
    "--batch-size": "eval.batch_size",
    "--tracking-uri": "tracking_uri",
}


def parse_job(argv: Sequence[str] | None = None) -> EvaluateJob:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_config_aliases(parser, ALIASES)
    add_config_arguments(parser, EvaluateJob)
    args = parser.parse_args(argv)
    try:
        job = config_from_args(EvaluateJob, args)
        job.model.check()
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    if not job.shards:
        parser.error("--shards (a split folder with index.json) is required")
    return job


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    job = parse_job(argv)
    import os

    from tdn.tracking.tracker import DEFAULT_TRACKING_URI

    tracking = job.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    init_ray(job.address or None)
    outcome = evaluate(job.model, job.shards, job.eval, job.out, tracking, job.experiment)
    print(json.dumps({**outcome.result.to_dict(), "run_id": outcome.run_id, "out": job.out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
