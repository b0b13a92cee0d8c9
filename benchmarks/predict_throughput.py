"""Predict on raw files against evaluate on shards of the same videos, in one run (issue 24: predict's
videos/s >= 0.9x evaluation's, the raw decode being the only extra).

    python -m benchmarks.predict_throughput [--videos 48] [--size 320x240] [--frames 48,96] [--segments 4]
        [--arch resnet18] [--width 0.25] [--input 112] [--short 128] [--engine local|ray] [--repeats 2]

Both run end to end on the same model (random weights: time does not depend on them) and the same videos:
synthetic H.264 files (``pipeline/synthetic``) of ``--size`` and a frame count drawn from ``--frames``,
sharded once by the real shard job (1 centre clip, frames stored at the model's short side). Measured:

    evaluate   tdn.evaluation.batch_inference.evaluate on the shards: its own clock (load the model, read and
               verify the tars, decode the stored JPEGs, crop, score, aggregate) -> videos/s
    predict    tdn.prediction.run.predict on the video files, --out a CSV: its clock (list the files, load
               the model, probe and decode each video, sample, JPEG-encode and decode the sampled frames,
               crop, score, write the parts and the output) -> videos/s

One replica, one thread each (``--engine local``: in this process; ``ray``: the replica pool). The order
alternates between repeats; the best repeat of each is reported with the ratio. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


def make_videos(work: Path, count: int, size: tuple[int, int], frames: tuple[int, int]) -> Path:
    """``count`` synthetic H.264 videos (4 motion classes) and test.csv listing them; returns the CSV."""
    from pipeline.synthetic.generate import SyntheticConfig, generate

    per_class = -(-count // 4)
    cfg = SyntheticConfig(
        classes=4,
        videos_per_class=per_class,
        codec="h264",
        sizes=(size,),
        min_frames=frames[0],
        max_frames=frames[1],
    )
    videos = generate(cfg, work / "videos")[:count]
    rows = "".join(f"{work / 'videos' / v.path},{v.class_name}\n" for v in videos)
    (work / "test.csv").write_text("path,label\n" + rows)
    return work / "test.csv"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=48)
    p.add_argument("--size", default="320x240", help="WxH of the source videos")
    p.add_argument("--frames", default="48,96", help="min,max frames per video")
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34", "resnet50", "resnet101"])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--input", type=int, default=112, help="crop side (the model's recipe)")
    p.add_argument("--short", type=int, default=128, help="short side (the model's recipe; the shards')")
    p.add_argument("--engine", choices=["local", "ray"], default="local")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--work", default="", help="folder for the data (default: a temporary one)")
    a = p.parse_args(argv)

    import torch

    from pipeline.config import config_to_dict
    from pipeline.datasets import DatasetConfig
    from pipeline.loading.config import LoaderConfig
    from pipeline.ray_connect import init_ray
    from pipeline.shards.job import ShardConfig, SplitShardConfig, run_shard_job
    from tdn.checkpoints.project import TrainingState, save_checkpoint
    from tdn.evaluation.batch_inference import evaluate
    from tdn.evaluation.model_source import ModelSource
    from tdn.evaluation.protocol import EvalConfig
    from tdn.model.networks import ModelConfig, build_model_from_config
    from tdn.prediction.config import PredictConfig
    from tdn.prediction.run import predict
    from tdn.training.config import TrainConfig

    torch.set_num_threads(1)
    width, height = (int(v) for v in a.size.split("x"))
    low, high = (int(v) for v in a.frames.split(","))
    work_ctx = tempfile.TemporaryDirectory(prefix="tdn-predict-bench-") if not a.work else None
    work = Path(a.work or work_ctx.name)  # type: ignore[union-attr]
    start = time.perf_counter()
    csv = make_videos(work, a.videos, (width, height), (low, high))
    print(
        f"videos: {a.videos} x {width}x{height} H.264, {low}-{high} frames ({time.perf_counter() - start:.0f}s)"
    )
    init_ray(None)
    shards = work / "shards"
    run_shard_job(
        ShardConfig(
            dataset=DatasetConfig(format="csv", root=str(work / "videos"), annotations=str(csv)),
            output=str(shards),
            splits=["test"],
            num_segments=a.segments,
            test=SplitShardConfig("centre", 1, a.short),
            videos_per_shard=8,
            progress_interval_s=1e9,
        )
    )
    cfg = ModelConfig(arch=a.arch, num_classes=4, num_segments=a.segments, width=a.width, dropout=0.0)
    torch.manual_seed(0)
    train = TrainConfig(model=cfg, loader=LoaderConfig(input_size=a.input, eval_short_side=a.short))
    ckpt = str(work / "model.pt")
    save_checkpoint(
        ckpt,
        build_model_from_config(cfg).eval(),
        cfg,
        None,
        TrainingState(train_config=config_to_dict(train)),
    )
    model = ModelSource(uri=ckpt)
    paths = [line.split(",")[0] for line in csv.read_text().splitlines()[1:]]
    best: dict[str, float] = {"evaluate": 0.0, "predict": 0.0}
    for rep in range(a.repeats):
        order = ["evaluate", "predict"] if rep % 2 == 0 else ["predict", "evaluate"]
        for what in order:
            if what == "evaluate":
                eval_cfg = EvalConfig(engine=a.engine, report_cams=0, cpus_per_replica=1.0)
                outcome = evaluate(
                    model, str(shards / "test"), eval_cfg, work / f"eval{rep}", log_to_mlflow=False
                )
                rate = outcome.result.videos_per_s
            else:
                job = PredictConfig(
                    sources=paths,
                    model=model,
                    out=str(work / f"pred{rep}.csv"),
                    engine=a.engine,
                    cpus_per_replica=1.0,
                    progress_interval_s=1e9,
                )
                rate = predict(job, log=lambda _: None).videos_per_s
            best[what] = max(best[what], rate)
            print(f"repeat {rep + 1}: {what} {rate:.2f} videos/s", flush=True)
    ratio = best["predict"] / best["evaluate"]
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"model: {a.arch} x{a.width} T={a.segments}, crop {a.input} of short side {a.short}; engine {a.engine}, "
        "1 replica, 1 thread\n"
    )
    print(f"| what | videos/s (best of {a.repeats}) |")
    print("|---|---|")
    print(f"| evaluate on shards | {best['evaluate']:.2f} |")
    print(f"| predict on raw files | {best['predict']:.2f} |")
    print(f"| predict / evaluate | {ratio:.2f}x |")
    if work_ctx is not None:
        work_ctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
