"""Evaluation throughput of TDN vs TSN, measured side by side in one run (the paper's Table 5 measure).

    python -m benchmarks.eval_throughput [--arch resnet50] [--segments 8] [--size 224] [--videos 16]
        [--repeats 2] [--engine local|ray] [--replicas 1] [--device cpu|cuda]

Both models (random weights: time does not depend on them) evaluate the same synthetic shards (1 clip x
centre crop, frames stored at short side 256 like real evaluation shards) through tdn.evaluation.batch_inference.evaluate, so the
time covers everything the paper counts: reading shards, JPEG decoding, cropping, normalising, inference and
aggregation. The order alternates between repeats; the best repeat of each model is reported, with the
TDN / TSN ratio of ms per video. Prints a Markdown table (copy it into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


def interleaved_inference_ms(
    ckpts: dict[str, str],
    split: Path,
    eval_cfg,
    device: str,
    repeats: int,
    threads: int,  # noqa: ANN001
) -> dict[str, float]:
    """Median forward time per video of each model, alternating models batch by batch on the same decoded
    batches, so that load from other processes on a shared machine hits both alike."""
    import statistics

    import torch

    from pipeline.loading.eval_loader import eval_batches
    from tdn.checkpoints.project import load_model_checkpoint
    from tdn.evaluation.protocol import TrainedSizes, resolve_protocol
    from tdn.evaluation.replica_pool import loader_config
    from tdn.evaluation.split import read_split

    torch.set_num_threads(threads)
    # the sizes are given (--size, --short-side): the checkpoints' recipe, which they do not record, is moot
    protocol = resolve_protocol(eval_cfg, read_split(str(split)), TrainedSizes())
    batches = list(eval_batches(str(split), loader_config(eval_cfg, protocol, device), eval_cfg.batch_size))
    models = {v: load_model_checkpoint(c)[0].eval().to(device) for v, c in ckpts.items()}
    times: dict[str, list[float]] = {v: [] for v in models}
    with torch.inference_mode():
        for m in models.values():
            m(batches[0].x.to(device))  # warm-up
        for rep in range(repeats):
            for i, b in enumerate(batches):
                x = b.x.to(device)
                order = list(models) if (rep + i) % 2 == 0 else list(models)[::-1]
                for v in order:
                    if device == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    models[v](x)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    times[v].append(1000.0 * (time.perf_counter() - t0) / len(x))
    return {v: statistics.median(t) for v, t in times.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet50", choices=["resnet18", "resnet34", "resnet50", "resnet101"])
    p.add_argument("--segments", type=int, default=8)
    p.add_argument("--size", type=int, default=224, help="centre crop side")
    p.add_argument("--short-side", type=int, default=256)
    p.add_argument("--videos", type=int, default=16)
    p.add_argument("--frames", type=int, default=48, help="frames per synthetic video")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--engine", choices=["local", "ray"], default="local")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    a = p.parse_args()

    import torch

    from pipeline.synthetic.frame_shards import SplitLayout, render_videos, write_split
    from pipeline.synthetic.render import MOTION_CLASSES
    from tdn.checkpoints.project import save_checkpoint
    from tdn.evaluation.batch_inference import evaluate
    from tdn.evaluation.model_source import ModelSource
    from tdn.evaluation.protocol import EvalConfig
    from tdn.model.networks import ModelConfig, build_model_from_config

    classes = [m.ucf_name for m in MOTION_CLASSES[:4]]
    tmp = Path(tempfile.mkdtemp(prefix="tdn-evalbench-"))
    per_class = max(1, a.videos // len(classes))
    # rendered at the stored evaluation resolution (short side 256), as the shard job stores frames
    h, w = a.short_side, a.short_side * 4 // 3
    videos = render_videos(len(classes), per_class, frames=a.frames, size=(h, w))
    split = write_split(
        tmp / "shards", videos, classes, SplitLayout(num_segments=a.segments, num_shards=max(2, a.replicas))
    )
    ckpts = {}
    for variant in ("tdn", "tsn"):
        cfg = ModelConfig(arch=a.arch, num_classes=len(classes), num_segments=a.segments, variant=variant)  # type: ignore[arg-type]
        torch.manual_seed(0)
        ckpts[variant] = str(tmp / f"{variant}.pt")
        save_checkpoint(ckpts[variant], build_model_from_config(cfg).eval(), cfg, classes)

    if a.engine == "ray":
        from pipeline.ray_connect import init_ray

        init_ray(None)
    eval_cfg = EvalConfig(
        protocol="ssv1x1",
        input_size=a.size,
        short_side=a.short_side,
        replicas=a.replicas,
        batch_size=a.batch_size,
        engine=a.engine,
        device=a.device,
        cpus_per_replica=a.threads,
    )
    best: dict[str, object] = {}
    for rep in range(a.repeats):
        order = ("tdn", "tsn") if rep % 2 == 0 else ("tsn", "tdn")
        for variant in order:
            out = evaluate(
                ModelSource(uri=ckpts[variant]),
                str(split),
                eval_cfg,
                tmp / f"out-{variant}-{rep}",
                log_to_mlflow=False,
            )
            r = out.result
            print(
                f"repeat {rep} {variant}: {r.ms_per_video:.1f} ms/video, {r.videos_per_s:.2f} videos/s",
                flush=True,
            )
            if variant not in best or r.ms_per_video < best[variant].ms_per_video:  # type: ignore[attr-defined]
                best[variant] = r
    tdn, tsn = best["tdn"], best["tsn"]
    infer = interleaved_inference_ms(ckpts, split, eval_cfg, a.device, a.repeats, a.threads)
    print()
    print(
        f"{len(videos)} videos, {a.arch} {a.segments}x1x1 at {a.size}px (short side {a.short_side}), "
        f"engine {a.engine}, replicas {a.replicas}, device {a.device}, {a.threads} thread(s), "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}, best of {a.repeats}, {time.strftime('%Y-%m-%d')}"
    )
    print()
    print(
        "| Model | Frames×Clips×Crops | GFLOPs/view | ms/video (whole evaluation) | videos/s | ms/video (inference "
        "only, interleaved median) |"
    )
    print("|---|---|---|---|---|---|")
    for name, key, r in (("TSN", "tsn", tsn), ("TDN", "tdn", tdn)):
        print(
            f"| {name} | {a.segments}×1×1 | {r.gflops:.1f} | {r.ms_per_video:.1f} | {r.videos_per_s:.2f} | "  # type: ignore[attr-defined]
            f"{infer[key]:.1f} |"
        )
    ratio = tdn.ms_per_video / tsn.ms_per_video  # type: ignore[attr-defined]
    print()
    print(
        f"TDN / TSN time ratio: whole evaluation {ratio:.2f}, inference only {infer['tdn'] / infer['tsn']:.2f} "
        f"(paper, V100, whole evaluation: 22.1 / 7.9 = {22.1 / 7.9:.2f}; GFLOPs ratio {tdn.gflops / tsn.gflops:.2f})"
    )  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
