"""Predict class names for your own videos with a trained model (tdn/prediction/run.py): no shards, no lists.

    python -m jobs.predict clips/ --model models:/quickstart-tdn@quickstart
    python -m jobs.predict clips/*.mp4 more.txt --model ray_results/RUN/epoch_0010 --out preds.parquet --features
    python -m jobs.predict s3://bucket/new/ --model models:/tdn-k400@champion --protocol k400_10x3 \
        --out s3://bucket/preds/new.csv --replicas 8
    python -m jobs.predict clip.mp4 --model best.pt --explain cams/ [--explain-class PanLeft]
    ray job submit --working-dir . -- python -m jobs.predict s3://bucket/new/ --model ... --out s3://...

SOURCE: video files, folders (recursive), globs, s3:// prefixes, or .txt / .csv lists of paths. MODEL
(--model): a checkpoint file or a run's checkpoint folder, models:/name@alias or models:/name/3; a released
TDN checkpoint with --official-checkpoint FILE --arch --segments --num-classes. The model's recipe (segments,
protocol, short side, crop, mean/std, class names: stored with the checkpoint) decides how each video is
sampled and cropped, through the shard job's decoding and sampling; --protocol / --input-size /
--short-side override it (printed, and recorded in the output's ``overrides`` column).

Output: for up to --table-max-videos videos a table on stdout (video, top-5 classes with %); --out FILE
(.csv, .jsonl, .parquet; local or s3://) one row per video: top-k labels and probabilities, model and
version, protocol, and ``error`` for a video that could not be read (the run goes on; exit 0 and the count
of failures at the end). --features adds the pooled clip embedding; --explain DIR writes Grad-CAM maps per
video (cam.png, cam.npy, cam.json). Beyond --local-max-videos videos it runs as Ray Data batch inference,
writing --out in parts (a re-run skips finished parts) with progress and an ETA.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from jobs.cli import Job, Option, Shortcut, model_source_flags, run, tracking_uri_flag
from tdn.prediction.config import PredictConfig
from tdn.prediction.output import table
from tdn.prediction.run import predict

EXAMPLE = """\
example: the quickstart's model (make quickstart) on a folder of new clips and one broken file

  $ python -m jobs.predict myvideos/ --model models:/quickstart-tdn@quickstart
  [predict] model models:/quickstart-tdn/1: tdn resnet18, 4 x 5 frames, ssv1x1, crop 56 of short side 64, 4 classes (recipe: stored)
  [predict] 7 videos, ssv1x1 (1 clip(s) x 1 crop(s) of 56 px at short side 64), 1 part(s), 0 already done, engine local
  [predict] 7/7 videos, 1/1 parts, 6.6 videos/s, 1 failed, ETA 0:00
  video                   top-4 (probability)
  myvideos/broken.mp4     error: open: not a readable media file: Invalid data found when processing input
  myvideos/pan_left.mp4   PanLeft 98.0% | ZoomOut 1.0% | ZoomIn 0.7% | PanRight 0.3%
  myvideos/pan_left.webm  PanLeft 93.7% | PanRight 3.4% | ZoomOut 1.6% | ZoomIn 1.3%
  myvideos/pan_right.mp4  PanRight 85.4% | PanLeft 9.0% | ZoomOut 3.0% | ZoomIn 2.6%
  myvideos/zoom_in.mp4    ZoomOut 45.7% | ZoomIn 43.9% | PanRight 6.3% | PanLeft 4.0%
  myvideos/zoom_out.mp4   ZoomOut 55.9% | ZoomIn 44.0% | PanRight 0.1% | PanLeft 0.0%
  myvideos/zoom_out.webm  ZoomOut 85.6% | ZoomIn 14.4% | PanRight 0.0% | PanLeft 0.0%
  predict: done: 7 videos, 1 failed (see the table) in 10.6 s (local engine, 0/1 parts already done)

more: docs/predict.md (output columns, Grad-CAM files, clusters, unlabelled data)
"""  # a real run (README "Predict on your own videos")

JOB = Job(
    "predict",
    PredictConfig,
    __doc__,
    options=(Option("source", "video files, folders, globs, s3:// prefixes, .txt/.csv lists", many=True),),
    shortcuts=(
        *model_source_flags(),
        Shortcut("--features", "features", const="true"),
        Shortcut("--explain-class", "explain_class"),
        Shortcut("--top-k", "top_k"),
        Shortcut("--input-size", "input_size"),
        Shortcut("--short-side", "short_side"),
        Shortcut("--batch-size", "batch_size"),
        tracking_uri_flag(),
    ),
    ray=True,
    epilog=EXAMPLE,
)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(JOB, argv, predict_job)


def predict_job(cfg: PredictConfig, args: argparse.Namespace) -> int:
    cfg.sources = [*(args.source or []), *cfg.sources]
    cfg.model.check()
    cfg.model.check_tracking(cfg.tracking_uri)
    summary = predict(cfg, log=lambda line: print(line, flush=True))
    if summary.rows:
        print(table(list(summary.rows), min(cfg.top_k, 5)), flush=True)
    where = f" -> {summary.out}" if summary.out else ""
    column = "the error column" if summary.out else "the table"
    failed = f", {summary.failed} failed (see {column})" if summary.failed else ", 0 failed"
    print(
        f"predict: done: {summary.videos} videos{failed}{where} in {summary.seconds:.1f} s "
        f"({summary.engine} engine, {summary.parts_already_done}/{summary.parts} parts already done)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
