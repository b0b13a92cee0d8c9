"""Shard-writing throughput against the floor of one plain decode pass, measured side by side in one run.

    python -m benchmarks.shard_throughput [--videos 12] [--size 320x240] [--frames 150,300] [--codec h264]

For each video (generated here: a panned textured scene, moving objects and film grain, so the encoder has
real motion and residuals to code), in one process on one core (CPU time of the process, best of N), with
the same sampled indices for every route:

- floor:    PyAV decode of every frame up to the last needed one, nothing else (no conversion).
- ours:     pipeline.shards.writer.video_samples: packet-count probe + one decode pass (unneeded
            non-reference frames left undecoded) + resize of the needed frames + JPEG + sample encoding,
            for the train preset (K views) and the eval preset, with the default YUV-planes JPEG encoder
            (simplejpeg) and, for comparison, with frame skipping off and with the RGB + PIL encoder;
            for sources under 320 lines also at source size, as the UCF101/HMDB51 presets store them.
- bound:    floor + the JPEG encoding alone of the frames ours stores (same planes, same encoder,
            prepared outside the timing): what any route that decodes the same frames and stores the same
            JPEGs costs at least. ours - bound is our overhead; bound - floor is the JPEG output itself.
- official: the released code's preparation route: decode every frame, resize, JPEG-encode every frame
            to disk-like bytes, then pick the sampled frames (the extraction dominates; picking is free).

Printed: seconds per video for each route, videos/s per CPU core, ratio to the floor, bytes per sample and
stored bytes per video (ours vs every-frame JPEGs).

``--write-unit-costs [PATH]`` records the first (default) train preset's unit costs in
benchmarks/unit_costs.json (pipeline/capacity/unit_costs.py ShardCost, keyed by size, codec and short side):
CPU-seconds per decoded frame (floor / frames decoded), per stored JPEG ((ours - floor) / stored JPEGs) and
bytes per stored JPEG, for the capacity plan (jobs/capacity.py).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

from benchmarks.shard_inputs import ENCODERS, compare_jpeg_encoders, make_video, timed
from pipeline.capacity.unit_costs import DEFAULT_PATH, ShardCost, here, update_unit_costs
from pipeline.shards.decode_types import FrameRequest
from pipeline.shards.frame_convert import output_size
from pipeline.shards.sampling import CentreSampler, Sampler, TrainSampler, rng_for
from pipeline.shards.video_file import VideoFile
from pipeline.shards.writer import EncodeSettings, VideoItem, frame_requests, video_samples


def needed_requests(
    sampler: Sampler, path: Path, video_id: str, split: str, seed: int, context_scale: int
) -> list[FrameRequest]:
    """The distinct (frame, scale) pairs ``video_samples`` stores for this video, in index order."""
    with VideoFile(str(path)) as video:
        n = video.probe().num_frames
    clips = sampler.sample(n, rng_for(seed, video_id, split))
    return sorted(
        {r for reqs in frame_requests(clips, context_scale) for r in reqs}, key=lambda r: (r.index, r.scale)
    )


def stored_planes(path: Path, requests: list[FrameRequest], short_side: int) -> list[list[np.ndarray]]:
    """The full-range YUV 4:2:0 planes of the stored frames at their stored size, edge-padded as the shard
    writer pads them: the input of the JPEG encoder alone (prepared outside any timing)."""
    from av.video.reformatter import VideoReformatter

    scales: dict[int, list[int]] = {}
    for r in requests:
        scales.setdefault(r.index, []).append(r.scale)
    planes, reformatter = [], VideoReformatter()
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            for scale in scales.get(i, []):
                w, h = output_size(frame.width, frame.height, short_side, scale)
                yuv = reformatter.reformat(
                    frame, width=w, height=h, format="yuvj420p", dst_colorspace="ITU601", threads=1
                )
                planes.append(
                    [
                        np.pad(
                            np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[: p.height, : p.width],
                            ((0, 16), (0, 16)),
                            mode="edge",
                        )[: p.height, : p.width]
                        for p in yuv.planes
                    ]
                )
            if i >= max(scales):
                break
    return planes


def jpeg_only(planes: list[list[np.ndarray]], quality: int) -> None:
    import simplejpeg

    for y, u, v in planes:
        simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality=quality)


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
            scaled = scaler.reformat(frame, width=w, height=h, interpolation="AREA", threads=1)
            rgb = to_rgb.reformat(scaled, format="rgb24", threads=1).to_ndarray()
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
            sizes.append(len(buf.getvalue()))
    picked = sum(sizes[min(i, len(sizes) - 1)] for i in needed)
    return sum(sizes), picked


def run_ray_job(paths: list[Path], tmp: Path, args: argparse.Namespace) -> None:
    """The real job (Ray Data, one task per shard, tar + upload + index) over the same videos, wall time."""
    import ray

    from pipeline.datasets import DatasetConfig
    from pipeline.shards.job import ShardConfig, SplitShardConfig, run_shard_job

    (tmp / "train.csv").write_text("".join(f'"{p}",0\n' for p in paths))
    val_paths = [p.with_name("val " + p.name) for p in paths]  # a video is listed in one split only
    for src, dst in zip(paths, val_paths):
        os.link(src, dst)
    (tmp / "val.csv").write_text("".join(f'"{p}",0\n' for p in val_paths))
    cfg = ShardConfig(
        dataset=DatasetConfig(format="csv", root=str(tmp), annotations=str(tmp)),
        output=str(tmp / "shards"),
        splits=["train", "val"],
        num_segments=args.segments,
        train=SplitShardConfig("train", args.train_views, 320),
        val=SplitShardConfig("centre", 1, 256),
        jpeg_quality=args.quality,
        videos_per_shard=max(1, len(paths) // (2 * args.ray_cpus)),
        progress_interval_s=1e9,
    )
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
    print(
        f"shard job on a local Ray with {args.ray_cpus} CPUs (train 2 views + val, warm workers): "
        f"{summary.seconds:.1f}s wall for {videos} videos, {videos / summary.seconds:.2f} videos/s, "
        f"{videos / summary.seconds / args.ray_cpus:.2f} videos/s per CPU (wall time: includes other "
        f"load on a shared machine)"
    )


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
    parser.add_argument(
        "--ray-cpus",
        type=int,
        default=0,
        help="also run the whole shard job (train + val) on a local Ray with this many CPUs",
    )
    parser.add_argument(
        "--write-unit-costs",
        nargs="?",
        const=str(DEFAULT_PATH),
        default=None,
        metavar="PATH",
        help="record the default train preset's unit costs in PATH",
    )
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    lo, hi = (int(v) for v in args.frames.split(","))

    train, views = TrainSampler(args.segments, args.train_views), args.train_views
    eval_ = CentreSampler(args.segments)
    presets: dict[str, tuple[Sampler, EncodeSettings]] = {
        f"train {views} views, short 320": (train, EncodeSettings(320, args.quality)),
        f"train {views} views, short 320, no frame skipping": (
            train,
            EncodeSettings(320, args.quality, skip_unneeded_frames=False),
        ),
        f"train {views} views, short 320, jpeg_encoder pil": (
            train,
            EncodeSettings(320, args.quality, jpeg_encoder="pil"),
        ),
        f"train {views} views, short 320, context at 1/2": (
            train,
            EncodeSettings(320, args.quality, context_scale=2),
        ),
        "eval centre 1 view, short 256": (eval_, EncodeSettings(256, args.quality)),
        "eval centre 1 view, short 256, jpeg_encoder pil": (
            eval_,
            EncodeSettings(256, args.quality, jpeg_encoder="pil"),
        ),
    }
    if min(width, height) < 320:
        # The UCF101/HMDB51 presets (upscale: false) keep sources under their short side at source size.
        presets[f"train {views} views, source size (ucf101/hmdb51 presets)"] = (
            train,
            EncodeSettings(0, args.quality),
        )
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
        print(
            f"{args.videos} {args.codec} videos {width}x{height}, {lo}-{hi} frames, {mbit:.2f} Mbit/s "
            f"(UCF101 averages about 0.5) (generated in {time.perf_counter() - gen_start:.0f}s); one process, one core, CPU time, "
            f"best of {args.repeat}, T={args.segments}, JPEG quality {args.quality}"
        )
        print(f"PyAV {av.__version__}, numpy {np.__version__}\n")
        header = f"{'route':58s} {'CPU s/video':>11s} {'videos/s/core':>13s} {'x floor':>8s} {'KB/sample':>9s} {'KB/video':>9s}"
        official_cache: dict[tuple[str, int, str], tuple[float, int, int]] = {}
        for name, (sampler, settings) in presets.items():
            split = "train" if isinstance(sampler, TrainSampler) else "val"
            floor_t = ours_t = official_t = jpeg_t = 0.0
            sample_bytes, samples, official_all, official_picked, not_decoded, decoded = 0, 0, 0, 0, 0, 0
            floor_frames, stored_jpegs = 0, 0  # frames the floor pass decodes; JPEGs in the samples' blobs
            skippable: list[float] = []
            for k, path in enumerate(paths):
                item = VideoItem(f"video {k:03d}", str(path), 0, split)
                requests = needed_requests(sampler, path, item.video_id, split, 0, settings.context_scale)
                needed = sorted({r.index for r in requests})
                skippable.append(needed[0] / (needed[-1] + 1))
                floor_t += timed(lambda p=path, n=needed: floor_pass(p, n[-1]), args.repeat)
                floor_frames += needed[-1] + 1
                out = None

                def ours(item=item, sampler=sampler, settings=settings):
                    nonlocal out
                    out = video_samples(item, sampler, 0, settings)

                ours_t += timed(ours, args.repeat)
                assert out is not None
                samples += len(out.samples)
                stored_jpegs += sum(len(json.loads(s["json"])["jpeg_sizes"]) for s in out.samples)
                not_decoded += out.frames_not_decoded
                sample_bytes += sum(len(s["frames"]) + len(s["json"]) + len(s["cls"]) for s in out.samples)
                decoded += out.frames_decoded
                if settings.jpeg_encoder == "simplejpeg":
                    planes = stored_planes(path, requests, settings.short_side)
                    jpeg_t += timed(lambda pl=planes, q=settings.jpeg_quality: jpeg_only(pl, q), args.repeat)
                key = (str(path), settings.short_side, "|".join(map(str, needed)))
                if key not in official_cache:
                    sizes: tuple[int, int] = (0, 0)

                    def official(path=path, settings=settings, needed=needed):
                        nonlocal sizes
                        sizes = official_route(path, settings.short_side, settings.jpeg_quality, needed)

                    official_cache[key] = (timed(official, args.repeat), *sizes)
                seconds, all_bytes, picked_bytes = official_cache[key]
                official_t += seconds
                official_all += all_bytes
                official_picked += picked_bytes
            n = len(paths)
            print(f"== {name}")
            print(header)
            print(
                f"{'floor: decode up to the last needed frame':58s} {floor_t / n:11.4f} {n / floor_t:13.1f} "
                f"{1.0:8.2f} {'':>9s} {'':>9s}"
            )
            if jpeg_t:
                bound = floor_t + jpeg_t
                print(
                    f"{'bound: floor + JPEG encoding of the stored frames alone':58s} {bound / n:11.4f} "
                    f"{n / bound:13.1f} {bound / floor_t:8.2f} {'':>9s} {'':>9s}"
                )
            print(
                f"{'ours: probe + decode + resize + JPEG + samples':58s} {ours_t / n:11.4f} {n / ours_t:13.1f} "
                f"{ours_t / floor_t:8.2f} {sample_bytes / samples / 1024:9.1f} {sample_bytes / n / 1024:9.1f}"
            )
            print(
                f"{'official: JPEG every frame, then sample':58s} {official_t / n:11.4f} "
                f"{n / official_t:13.1f} {official_t / floor_t:8.2f} "
                f"{official_picked / samples / 1024:9.1f} {official_all / n / 1024:9.1f}"
            )
            print(
                f"frames up to the last needed one left undecoded by ours (unneeded non-reference frames): "
                f"{100 * not_decoded / decoded:.1f}%; before the first needed one (all a seek could skip, "
                f"keyframes permitting): {100 * sum(skippable) / n:.1f}%"
            )
            print()
            if args.write_unit_costs and name == next(iter(presets)):
                given = sys.argv[1:] if argv is None else argv
                command = "python -m benchmarks.shard_throughput " + " ".join(given)
                cost = ShardCost(
                    source_width=width,
                    source_height=height,
                    codec=args.codec,
                    stored_short_side=320,
                    jpeg_quality=args.quality,
                    cpu_s_per_decoded_frame=floor_t / floor_frames,
                    cpu_s_per_stored_jpeg=(ours_t - floor_t) / stored_jpegs,
                    bytes_per_stored_jpeg=sample_bytes / stored_jpegs,
                    source=here(
                        command,
                        f"{n} synthetic videos, {lo}-{hi} frames, best of {args.repeat}, "
                        f"CPU time of one process; preset '{name}'; shared machine (load "
                        f"{os.getloadavg()[0]:.0f})",
                    ),
                )
                update_unit_costs(Path(args.write_unit_costs), shard=cost)
                print(
                    f"unit costs -> {args.write_unit_costs}: {cost.cpu_s_per_decoded_frame * 1e3:.3f} ms "
                    f"per decoded frame, {cost.cpu_s_per_stored_jpeg * 1e3:.3f} ms and "
                    f"{cost.bytes_per_stored_jpeg / 1024:.1f} KiB per stored JPEG\n"
                )
        compare_jpeg_encoders(paths[0], args.quality)
        if args.ray_cpus > 0:
            run_ray_job(paths, Path(tmp), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
