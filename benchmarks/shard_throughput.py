"""Shard-writing throughput against the floor of one plain decode pass, measured side by side in one run.

    python benchmarks/shard_throughput.py [--videos 12] [--size 320x240] [--frames 150,300] [--codec h264]

For each video (generated here: a panned textured scene, moving objects and film grain, so the encoder has
real motion and residuals to code), in one process on one core (CPU time of the process, best of N), with the same sampled indices for\nevery route:

- floor:    PyAV decode of every frame up to the last needed one, nothing else (no conversion).
- ours:     pipeline.shard_writer.video_samples: packet-count probe + one decode pass + resize/RGB of the
            needed frames + JPEG + sample encoding, for the train preset (K views) and the eval preset.
- official: the released code's preparation route: decode every frame, resize, JPEG-encode every frame
            to disk-like bytes, then pick the sampled frames (the extraction dominates; picking is free).

Printed: seconds per video for each route, videos/s per CPU core, ratio to the floor, bytes per sample and
stored bytes per video (ours vs every-frame JPEGs).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.decode import VideoFile, output_size
from pipeline.sampling import CentreSampler, Sampler, TrainSampler, rng_for
from pipeline.shard_writer import EncodeSettings, VideoItem, video_samples

ENCODERS = {"h264": ("libx264", ".mp4"), "mpeg4": ("mpeg4", ".avi"), "vp9": ("libvpx-vp9", ".webm")}


def render_frames(frames: int, width: int, height: int, rng: np.random.Generator):
    """Yield (H, W, 3) uint8 frames: a smooth textured scene panned by the camera, two textured objects
    moving across it and film grain, so that the encoder has real motion and residuals to code."""
    canvas_h, canvas_w = height + frames, width + 2 * frames
    coarse = rng.uniform(30, 220, size=(canvas_h // 16 + 2, canvas_w // 16 + 2, 3))
    canvas = np.asarray(
        Image.fromarray(coarse.astype(np.uint8)).resize((canvas_w, canvas_h), Image.Resampling.BICUBIC),
        dtype=np.float32,
    ) + rng.normal(0, 3.0, size=(canvas_h, canvas_w, 1)).astype(np.float32)  # static fine texture
    objects = [rng.uniform(0, 255, size=(height // 3, width // 4, 3)).astype(np.float32) for _ in range(2)]
    grain = rng.normal(0, 2.0, size=(8, height, width, 1)).astype(np.float32)
    for i in range(frames):
        frame = canvas[i // 2 : i // 2 + height, 2 * i // 3 : 2 * i // 3 + width].copy()
        for k, obj in enumerate(objects):
            y = (height // 4 + int(20 * np.sin(i / (7 + k)))) % (height - obj.shape[0])
            x = (3 * i * (k + 1)) % (width - obj.shape[1])
            frame[y : y + obj.shape[0], x : x + obj.shape[1]] = obj
        yield np.clip(frame + grain[i % 8], 0, 255).astype(np.uint8)


def make_video(path: Path, frames: int, width: int, height: int, codec: str, seed: int) -> None:
    encoder, _ = ENCODERS[codec]
    opts = {"crf": "23", "preset": "medium"} if codec == "h264" else {}
    if codec == "vp9":
        opts = {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8"}
    with av.open(str(path), "w") as out:
        stream = out.add_stream(encoder, rate=25, options=opts)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "mpeg4":
            stream.bit_rate = 700_000  # UCF101's XviD files are about 0.5-1 Mbit/s
        for rgb in render_frames(frames, width, height, np.random.default_rng(seed)):
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def needed_frames(sampler: Sampler, path: Path, video_id: str, split: str, seed: int) -> list[int]:
    with VideoFile(str(path)) as video:
        n = video.probe().num_frames
    clips = sampler.sample(n, rng_for(seed, video_id, split))
    return sorted({i for c in clips for i in c.unique_frames()})


def _frame_count(path: Path) -> int:
    with VideoFile(str(path)) as video:
        return video.probe().num_frames


def floor_pass(path: Path, last_needed: int) -> None:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for i, _ in enumerate(container.decode(stream)):
            if i >= last_needed:
                break


def official_route(path: Path, short_side: int, quality: int, needed: list[int]) -> tuple[int, int]:
    """Extract every frame as a resized JPEG (as the released code's data preparation does), then sample.
    Returns (bytes of all extracted frames, bytes of the sampled ones)."""
    from av.video.reformatter import VideoReformatter

    sizes = []
    scaler, to_rgb = VideoReformatter(), VideoReformatter()  # cached swscale contexts, as ours uses
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            w, h = output_size(frame.width, frame.height, short_side)
            scaled = scaler.reformat(frame, width=w, height=h, interpolation="AREA")
            rgb = to_rgb.reformat(scaled, format="rgb24").to_ndarray()
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
            sizes.append(len(buf.getvalue()))
    picked = sum(sizes[min(i, len(sizes) - 1)] for i in needed)
    return sum(sizes), picked


def timed(fn, repeat: int) -> float:
    """Best-of-``repeat`` CPU seconds of this process. Every route runs single-threaded in this process, so
    CPU time measures its work; wall time on a machine shared with other jobs would mostly measure them."""
    best = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best.append(time.process_time() - start)
    return min(best)


def compare_jpeg_encoders(path: Path, quality: int, frames: int = 60) -> None:
    """PIL (libjpeg-turbo) from RGB vs PyAV's mjpeg encoder from yuvj420p, resize included in both."""
    import fractions

    with av.open(str(path)) as container:
        decoded = [f for _, f in zip(range(frames), container.decode(video=0))]
    width, height = output_size(decoded[0].width, decoded[0].height, 320)
    width -= width % 2  # the mjpeg encoder wants even sizes for 4:2:0

    from av.video.reformatter import VideoReformatter

    scaler, to_rgb, to_yuvj = VideoReformatter(), VideoReformatter(), VideoReformatter()

    def pil() -> None:
        for f in decoded:
            rgb = to_rgb.reformat(scaler.reformat(f, width=width, height=height), format="rgb24").to_ndarray()
            Image.fromarray(rgb).save(io.BytesIO(), format="JPEG", quality=quality)

    def mjpeg() -> None:
        ctx = av.CodecContext.create("mjpeg", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuvj420p"
        ctx.time_base = fractions.Fraction(1, 25)
        ctx.qscale = 3  # about the size of PIL's quality 90
        ctx.open()
        for i, f in enumerate(decoded):
            y = to_yuvj.reformat(f, width=width, height=height, format="yuvj420p")
            y.pts, y.time_base = i, ctx.time_base
            ctx.encode(y)

    def yuv_planes() -> None:
        import simplejpeg

        for f in decoded:
            y = to_yuvj.reformat(f, width=width, height=height, format="yuvj420p", dst_colorspace="ITU601")
            planes = [np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[: p.height, : p.width] for p in y.planes]
            simplejpeg.encode_jpeg_yuv_planes(*(np.ascontiguousarray(p) for p in planes), quality=quality)

    t_pil, t_mjpeg = timed(pil, 3) / frames, timed(mjpeg, 3) / frames
    line = (f"JPEG encoders at {width}x{height}, resize included: PIL from RGB {1000 * t_pil:.3f} ms/frame, "
            f"PyAV mjpeg from yuvj420p {1000 * t_mjpeg:.3f} ms/frame")
    try:
        line += f", simplejpeg from YUV planes {1000 * timed(yuv_planes, 3) / frames:.3f} ms/frame"
    except ImportError:
        pass
    print(line)


def run_ray_job(paths: list[Path], tmp: Path, args: argparse.Namespace) -> None:
    """The real job (Ray Data, one task per shard, tar + upload + index) over the same videos, wall time."""
    import ray

    from pipeline.datasets import DatasetConfig
    from pipeline.shard_job import ShardConfig, SplitShardConfig, run_shard_job

    (tmp / "train.csv").write_text("".join(f'"{p}",0\n' for p in paths))
    val_paths = [p.with_name("val " + p.name) for p in paths]  # a video is listed in one split only
    for src, dst in zip(paths, val_paths):
        os.link(src, dst)
    (tmp / "val.csv").write_text("".join(f'"{p}",0\n' for p in val_paths))
    cfg = ShardConfig(
        dataset=DatasetConfig(format="csv", root=str(tmp), annotations=str(tmp)), output=str(tmp / "shards"),
        splits=["train", "val"], num_segments=args.segments, train=SplitShardConfig("train", args.train_views, 320),
        val=SplitShardConfig("centre", 1, 256), jpeg_quality=args.quality,
        videos_per_shard=max(1, len(paths) // (2 * args.ray_cpus)), progress_interval_s=1e9,
    )  # fmt: skip
    ray.init(address="local", num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    try:
        run_shard_job(cfg)  # warm-up: starts the workers; its shards are then skipped
        for split in ("train", "val"):
            for f in (tmp / "shards" / split).iterdir():
                f.unlink()
        summary = run_shard_job(cfg)
    finally:
        ray.shutdown()
    videos = 2 * len(paths)
    print(f"shard job on a local Ray with {args.ray_cpus} CPUs (train 2 views + val, warm workers): "
          f"{summary['seconds']:.1f}s wall for {videos} videos, {videos / summary['seconds']:.2f} videos/s, "
          f"{videos / summary['seconds'] / args.ray_cpus:.2f} videos/s per CPU (wall time: includes other "
          f"load on a shared machine)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--frames", default="150,300", help="min,max frames per video")
    parser.add_argument("--codec", choices=sorted(ENCODERS), default="h264")
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--train-views", type=int, default=2)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=3, help="best of N per video and route")
    parser.add_argument("--ray-cpus", type=int, default=0,
                        help="also run the whole shard job (train + val) on a local Ray with this many CPUs")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    lo, hi = (int(v) for v in args.frames.split(","))

    presets: dict[str, tuple[Sampler, EncodeSettings]] = {
        f"train {args.train_views} views, short 320": (
            TrainSampler(args.segments, args.train_views), EncodeSettings(320, args.quality)),
        f"train {args.train_views} views, short 320, context at 1/2": (
            TrainSampler(args.segments, args.train_views), EncodeSettings(320, args.quality, context_scale=2)),
        "eval centre 1 view, short 256": (CentreSampler(args.segments), EncodeSettings(256, args.quality)),
    }  # fmt: skip
    try:
        import simplejpeg  # noqa: F401 - optional: YUV planes straight to JPEG

        presets |= {
            f"train {args.train_views} views, short 320, jpeg_encoder simplejpeg": (
                TrainSampler(args.segments, args.train_views),
                EncodeSettings(320, args.quality, jpeg_encoder="simplejpeg")),
            f"train {args.train_views} views, short 320, context at 1/2, simplejpeg": (
                TrainSampler(args.segments, args.train_views),
                EncodeSettings(320, args.quality, context_scale=2, jpeg_encoder="simplejpeg")),
            "eval centre 1 view, short 256, jpeg_encoder simplejpeg": (
                CentreSampler(args.segments), EncodeSettings(256, args.quality, jpeg_encoder="simplejpeg")),
        }  # fmt: skip
    except ImportError:
        print("(simplejpeg not installed: the jpeg_encoder=simplejpeg presets are skipped)")
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        rng = np.random.default_rng(0)
        gen_start = time.perf_counter()
        for k in range(args.videos):
            path = Path(tmp) / f"video {k:03d}{ENCODERS[args.codec][1]}"
            make_video(path, int(rng.integers(lo, hi + 1)), width, height, args.codec, seed=k)
            paths.append(path)
        seconds_of_video = sum(_frame_count(p) for p in paths) / 25.0
        mbit = sum(p.stat().st_size for p in paths) * 8 / 1e6 / seconds_of_video
        print(f"{args.videos} {args.codec} videos {width}x{height}, {lo}-{hi} frames, {mbit:.2f} Mbit/s "
              f"(UCF101 averages about 0.5) (generated in {time.perf_counter() - gen_start:.0f}s); one process, one core, CPU time, "
              f"best of {args.repeat}, T={args.segments}, JPEG quality {args.quality}")
        print(f"PyAV {av.__version__}, numpy {np.__version__}\n")
        header = f"{'route':58s} {'CPU s/video':>11s} {'videos/s/core':>13s} {'x floor':>8s} {'KB/sample':>9s} {'KB/video':>9s}"
        for name, (sampler, settings) in presets.items():
            split = "train" if isinstance(sampler, TrainSampler) else "val"
            floor_t = ours_t = official_t = 0.0
            sample_bytes, samples, official_all, official_picked = 0, 0, 0, 0
            skippable: list[float] = []
            for k, path in enumerate(paths):
                item = VideoItem(f"video {k:03d}", str(path), 0, split)
                needed = needed_frames(sampler, path, item.video_id, split, 0)
                skippable.append(needed[0] / (needed[-1] + 1))
                floor_t += timed(lambda p=path, n=needed: floor_pass(p, n[-1]), args.repeat)
                out = None

                def ours(item=item, sampler=sampler, settings=settings):
                    nonlocal out
                    out = video_samples(item, sampler, 0, settings)

                ours_t += timed(ours, args.repeat)
                assert out is not None
                samples += len(out.samples)
                sample_bytes += sum(len(s["frames"]) + len(s["json"]) + len(s["cls"]) for s in out.samples)
                sizes: tuple[int, int] = (0, 0)

                def official(path=path, settings=settings, needed=needed):
                    nonlocal sizes
                    sizes = official_route(path, settings.short_side, settings.jpeg_quality, needed)

                official_t += timed(official, args.repeat)
                official_all += sizes[0]
                official_picked += sizes[1]
            n = len(paths)
            print(f"== {name}")
            print(header)
            print(f"{'floor: decode up to the last needed frame':58s} {floor_t / n:11.4f} {n / floor_t:13.1f} "
                  f"{1.0:8.2f} {'':>9s} {'':>9s}")
            print(f"{'ours: probe + decode + resize + JPEG + samples':58s} {ours_t / n:11.4f} {n / ours_t:13.1f} "
                  f"{ours_t / floor_t:8.2f} {sample_bytes / samples / 1024:9.1f} {sample_bytes / n / 1024:9.1f}")
            print(f"{'official: JPEG every frame, then sample':58s} {official_t / n:11.4f} "
                  f"{n / official_t:13.1f} {official_t / floor_t:8.2f} "
                  f"{official_picked / samples / 1024:9.1f} {official_all / n / 1024:9.1f}")
            print(f"frames before the first needed one (all a seek could skip, keyframes permitting): "
                  f"{100 * sum(skippable) / n:.1f}% of the decode")
            print()
        compare_jpeg_encoders(paths[0], args.quality)
        if args.ray_cpus > 0:
            run_ray_job(paths, Path(tmp), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
