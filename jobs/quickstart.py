"""The whole pipeline end to end on one machine, on embedded defaults (what `make quickstart` runs).

    python -m jobs.quickstart [--workdir quickstart] [--fresh] [--videos-per-class 12] [--epochs 12]

    [1/6] synthetic motion videos in UCF101's layout      quickstart/data/ucf101/
    [2/6] Ray Data shard job                              quickstart/shards/{train,test}/
    [3/6] train TDN (Ray Train, 2 DDP workers)            quickstart/ray_results/, MLflow run + model
    [4/6] train TSN, same budget                          ...
    [5/6] evaluate both (1 clip x centre crop)            quickstart/eval/{tdn,tsn}/results.json
    [6/6] benchmark table from the MLflow runs            quickstart/tables/

A local Ray is started, MLflow uses a sqlite store under ./mlruns (or --tracking-uri), and everything else
stays under --workdir. A re-run reuses every finished stage (videos present, shards indexed, a training or
evaluation whose result file exists); --fresh starts over.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import ray.data

from jobs import cli
from pipeline.config import load_config
from pipeline.datasets import DatasetConfig
from pipeline.ray_connect import init_ray
from pipeline.shards.job import ShardConfig, SplitShardConfig, run_shard_job
from pipeline.synthetic.generate import SyntheticConfig, generate
from tdn.evaluation.batch_inference import evaluate as run_evaluation
from tdn.evaluation.model_source import ModelSource
from tdn.evaluation.protocol import EvalConfig
from tdn.evaluation.results import OLD_FIELDS
from tdn.evaluation.table_runs import refresh_tables
from tdn.model.networks import Variant
from tdn.tracking.mlflow_store import DEFAULT_TRACKING_URI, tracking_off
from tdn.training.config import TrainConfig
from tdn.training.launcher import best_checkpoint, fit
from tdn.training.metric_names import VAL_TOP1_PCT, best_key

REPO = Path(__file__).resolve().parent.parent
TRAIN_PRESET = REPO / "jobs" / "configs" / "synthetic_tiny.yaml"


@dataclass(frozen=True)
class QuickstartConfig:
    workdir: str = "quickstart"  # every output but MLflow's goes under this folder
    tracking_uri: str = DEFAULT_TRACKING_URI  # MLflow tracking URI (a local sqlite store by default)
    # Whole-frame pans and zooms: single frames look alike in every class, and a tiny TDN learns them on a CPU.
    motions: tuple[str, ...] = ("pan_left", "pan_right", "zoom_in", "zoom_out")
    videos_per_class: int = 40  # synthetic videos per motion class
    epochs: int = 0  # 0 = the preset's
    workers: int = 2  # DDP workers of each training
    seed: int = 0  # seed of the videos, the shards and the training


def stage(n: int, title: str) -> float:
    print(f"\n[{n}/6] {title}", flush=True)
    return time.perf_counter()


def done(start: float, what: str) -> None:
    print(f"      done in {time.perf_counter() - start:.1f}s: {what}", flush=True)


def make_videos(cfg: QuickstartConfig) -> Path:
    root = Path(cfg.workdir) / "data" / "ucf101"
    start = stage(
        1, f"synthetic motion videos: {', '.join(cfg.motions)} x {cfg.videos_per_class} (UCF101 layout)"
    )
    if (root / "synthetic_manifest.json").is_file():
        done(start, f"reused {root}")
        return root
    videos = generate(
        SyntheticConfig(
            classes=len(cfg.motions),
            motions=cfg.motions,
            videos_per_class=cfg.videos_per_class,
            seed=cfg.seed,
        ),
        root,
    )
    done(start, f"{len(videos)} videos, {sum(v.num_frames for v in videos)} frames -> {root}")
    return root


def make_shards(cfg: QuickstartConfig, videos: Path, num_segments: int, input_size: int) -> Path:
    out = Path(cfg.workdir) / "shards"
    start = stage(2, "shard job (Ray Data): decode -> 5-frame windows -> WebDataset shards")
    if all((out / split / "index.json").is_file() for split in ("train", "test")):
        done(start, f"reused {out}")
        return out
    start_ray(cfg)
    shard_cfg = ShardConfig(
        dataset=DatasetConfig(format="ucf101", root=str(videos), split_number=1),
        output=str(out),
        splits=["train", "test"],
        num_segments=num_segments,
        # The released code's ratios (crop 224 from 320 for training, 256 for testing), scaled to the input.
        train=SplitShardConfig("train", 2, eval_short_side(input_size) * 320 // 256),
        test=SplitShardConfig("centre", 1, eval_short_side(input_size)),
        videos_per_shard=8,
        seed=cfg.seed,
        progress_interval_s=5.0,
    )
    # Finished shards are skipped, so a re-run only checks what is there.
    summary = run_shard_job(shard_cfg)
    counts = {s: v.samples for s, v in summary.splits.items()}
    done(start, f"samples per split {counts} -> {out}")
    return out


ALIAS = "quickstart"


def registered_name(variant: str) -> str:
    return f"quickstart-{variant}"


def eval_short_side(input_size: int) -> int:
    return round(input_size * 256 / 224)


def train(cfg: QuickstartConfig, variant: Variant, shards: Path, n: int) -> str:
    """Train one variant; returns its final checkpoint path (reused when the run finished before)."""
    marker = Path(cfg.workdir) / f"train-{variant}.json"
    start = stage(n, f"train {variant.upper()} (ResNet-18 x0.25, Ray Train DDP with {cfg.workers} workers)")
    if marker.is_file():
        checkpoint = json.loads(marker.read_text())["checkpoint"]
        done(start, f"reused {checkpoint}")
        return checkpoint
    start_ray(cfg)
    tc = load_config(TrainConfig, TRAIN_PRESET)
    tc = replace(
        tc,
        model=replace(tc.model, variant=variant, num_classes=len(cfg.motions)),
        data=replace(tc.data, shards=str(shards), train_split="train", val_split="test"),
        optim=replace(tc.optim, epochs=cfg.epochs or tc.optim.epochs),
        run=replace(
            tc.run,
            workers=cfg.workers,
            seed=cfg.seed,
            name="",
            storage_path=str((Path(cfg.workdir) / "ray_results").resolve()),
        ),
        tracking=replace(
            tc.tracking,
            uri=cfg.tracking_uri,
            registered_model=registered_name(variant),
            registered_alias=ALIAS,
        ),
    )
    result = fit(tc)
    if result.error is not None:
        raise RuntimeError(f"training {variant} failed: {result.error}")
    best = best_checkpoint(tc, result)  # by checkpoint.monitor (val/top1_pct): the one registered too
    checkpoint = str(Path(best.path) / "checkpoint.pt")
    marker.write_text(json.dumps({"checkpoint": checkpoint, "metrics": result.metrics}, default=str))
    top1 = result.metrics.get(best_key(VAL_TOP1_PCT), float("nan"))
    done(start, f"best val top-1 {top1:.1f}% -> {checkpoint}")
    return checkpoint


def evaluate(cfg: QuickstartConfig, variant: str, shards: Path, input_size: int) -> dict:
    out = Path(cfg.workdir) / "eval" / variant
    results = out / "results.json"
    if results.is_file():
        print(f"      {variant}: reused {results}")
        # a results.json of an earlier version names the percentages top1 / top5 / mean_class_acc
        return {OLD_FIELDS.get(k, k): v for k, v in json.loads(results.read_text()).items()}
    start_ray(cfg)
    eval_cfg = EvalConfig(
        protocol="ssv1x1",
        input_size=input_size,
        short_side=eval_short_side(input_size),
        replicas=1,
        batch_size=8,
    )
    # The registered version the training run just made, so the evaluation run links to it in MLflow.
    model = ModelSource(uri=f"models:/{registered_name(variant)}@{ALIAS}")
    run_evaluation(model, str(shards / "test"), eval_cfg, out, tracking_uri=cfg.tracking_uri)
    return json.loads(results.read_text())


def table(cfg: QuickstartConfig) -> str:
    tables, _ = refresh_tables(cfg.tracking_uri, Path(cfg.workdir) / "tables", with_paper=False)
    filled = [t.to_markdown() for t in tables if t.rows]
    return "\n".join(filled) if filled else "(no evaluations found)"


def start_ray(cfg: QuickstartConfig) -> None:
    """A private local Ray, started by the first stage that needs it (a re-run of finished stages needs none)."""
    init_ray(None, num_cpus=max(2, cfg.workers + 1))


def run(cfg: QuickstartConfig) -> dict[str, dict]:
    total = time.perf_counter()
    Path(cfg.workdir).mkdir(parents=True, exist_ok=True)
    preset = load_config(TrainConfig, TRAIN_PRESET)
    videos = make_videos(cfg)
    shards = make_shards(cfg, videos, preset.model.num_segments, preset.loader.input_size)
    variants: tuple[tuple[Variant, int], ...] = (("tdn", 3), ("tsn", 4))
    checkpoints = {v: train(cfg, v, shards, n) for v, n in variants}
    start = stage(5, "evaluate both on the test split (Ray Data batch inference, 1 clip x centre crop)")
    results = {v: evaluate(cfg, v, shards, preset.loader.input_size) for v in checkpoints}
    done(start, ", ".join(f"{v} top-1 {r['top1_pct']:.1f}%" for v, r in results.items()))
    start = stage(6, "benchmark table (built from the evaluation runs in MLflow)")
    print(table(cfg))
    done(start, f"tables in {Path(cfg.workdir) / 'tables'}")
    print(f"\nquickstart finished in {time.perf_counter() - total:.0f}s")
    print("Browse the runs, curves and artifacts in the MLflow UI:")
    if cfg.tracking_uri.startswith("sqlite:"):
        print(
            f"  .venv/bin/mlflow ui --backend-store-uri {cfg.tracking_uri} --port 5000   # then open http://127.0.0.1:5000"
        )
    else:
        print(f"  {cfg.tracking_uri}")
    return results


def quiet_ray_data() -> None:
    """The stages print their own progress lines; Ray Data's per-operator log lines would drown them."""
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def check(cfg: QuickstartConfig) -> None:
    if tracking_off(cfg.tracking_uri):
        raise ValueError(
            "--tracking-uri none: the quickstart registers, evaluates and tabulates through MLflow"
        )


JOB = cli.Job(
    "quickstart",
    QuickstartConfig,
    __doc__,
    check=check,
    shortcuts=(
        cli.tracking_uri_flag(
            needs_mlflow="the quickstart registers, evaluates and tabulates through MLflow"
        ),
        cli.Shortcut("--motions", "motions", help="comma-separated motion classes"),
        cli.Shortcut("--videos-per-class", "videos_per_class"),
        cli.Shortcut("--epochs", "epochs", help="0 = the preset's"),
    ),
    options=(cli.Option("--fresh", "delete --workdir first and start over", switch=True),),
    ray=True,
)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return cli.run(JOB, argv, quickstart)


def quickstart(cfg: QuickstartConfig, args: argparse.Namespace) -> int:
    quiet_ray_data()
    if args.fresh and Path(cfg.workdir).exists():
        shutil.rmtree(cfg.workdir)
    if cfg.tracking_uri.startswith("sqlite:///"):
        Path(cfg.tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    run(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
