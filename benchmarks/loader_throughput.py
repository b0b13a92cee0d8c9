"""Training-input throughput: our shard loader vs decoding the source videos on the fly, side by side.

    python -m benchmarks.loader_throughput [--work DIR] [--videos-per-class 4] [--size 426x320]
        [--input-size 224] [--samples 48] [--repeats 3]

What it does, all in one run on the same synthetic videos (pipeline.synthetic.generate, H.264, short side 320 like
the usual Kinetics preparation; 150-300 frames at 25 fps, i.e. 6-12 s clips like Kinetics' 10 s):

1. writes train shards with the shard writer (pipeline.shards.writer.write_shard: 8 segments, 2 views, short
   side 320, JPEG q90), once at full resolution and once with the half-resolution neighbour frames
   (context_scale 2);
2. measures samples/s on ONE core (one process, one thread) for
   - "on the fly": what the released code / typical peers do per sample: open the video with PyAV, sample
     the same 8 x 5 window frames (TrainSampler), decode from the start up to the last needed frame, then
     GroupMultiScaleCrop + flip on PIL images (crop and resize every one of the 40 frames), to tensor,
     normalise;
   - "shards, naive": the same transforms on the shard JPEGs (decode all 40 frames, crop, resize);
   - "shards, ours": pipeline.loading.train_loader (unique frames only, draft, crop before resize, one
     normalisation per batch), without and with draft, and on half-resolution-neighbour shards;
   - "shards, ours, unverified": the same without the read-time checks (each JPEG's CRC32, each shard's
     sha256), whose cost is printed as a share of loader CPU;
   repetitions are interleaved and the median is reported with the ratio ours / on-the-fly;
3. quantifies the half-resolution neighbour storage: relative change of the S-TDM input avgpool2(diff) and of
   the raw differences against full-resolution shards, on identical crops.

The data wait of real training steps fed by this loader is benchmarks/train_throughput.py's. Timings on a
shared machine are noisy; the ratios come from interleaved runs in the same process.

``--write-unit-costs [PATH]`` records the CPU decode path's clips per core-second (row shards_ours_uint8_out,
the GPU trainers' setting) as a LoaderCost in benchmarks/unit_costs.json, for jobs/capacity.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from benchmarks.loader_storage import half_resolution_effect, split_bytes
from pipeline import storage
from pipeline.capacity.unit_costs import DEFAULT_PATH, LoaderCost, here, update_unit_costs
from pipeline.loading.config import LoaderConfig
from pipeline.loading.shard_reading import read_index, shard_uris
from pipeline.loading.train_loader import train_loader
from pipeline.loading.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    flip_decision,
    multi_scale_crop_box,
)
from pipeline.shards.contract import split_jpegs
from pipeline.shards.sampling import TrainSampler

SEGMENTS = 8
VIEWS = 2
SHORT_SIDE = 320


# --------------------------------------------------------------------------------------------- data


def make_videos(work: Path, size: tuple[int, int], videos_per_class: int) -> list:
    from pipeline.synthetic.generate import SyntheticConfig, generate, load_manifest

    root = work / "videos"
    if (root / "synthetic_manifest.json").exists():
        return [(root / v.path, v) for v in load_manifest(root)]
    cfg = SyntheticConfig(
        classes=4,
        videos_per_class=videos_per_class,
        sizes=(size,),
        fps=(25,),
        min_frames=150,
        max_frames=300,
        codec="h264",
    )
    return [(root / v.path, v) for v in generate(cfg, root)]


def make_shards(work: Path, videos: list, context_scale: int) -> str:
    from pipeline.shards.contract import ResizeSettings, SamplingSettings
    from pipeline.shards.sampling import WINDOW
    from pipeline.shards.writer import EncodeSettings, ShardTask, VideoItem, build_index, write_shard

    split_dir = str(work / f"shards_ctx{context_scale}" / "train")
    if storage.exists(storage.join(split_dir, "index.json")):
        return split_dir
    items = [VideoItem(str(path).replace(os.sep, "_"), str(path), v.label, "train") for path, v in videos]
    settings = EncodeSettings(short_side=SHORT_SIDE, jpeg_quality=90, context_scale=context_scale)
    sidecars = []
    per_shard = 8
    for i in range(0, len(items), per_shard):
        task = ShardTask(
            "train",
            i // per_shard,
            split_dir,
            tuple(items[i : i + per_shard]),
            TrainSampler(SEGMENTS, VIEWS),
            0,
            settings,
        )
        result = write_shard(task)
        if result.sidecar.quarantine:
            raise RuntimeError(f"shard writer quarantined videos: {result.sidecar.quarantine}")
        sidecars.append(result.sidecar)
    sampling = SamplingSettings(
        sampler="train", num_segments=SEGMENTS, window=WINDOW, views=VIEWS, seed=0, videos_per_shard=per_shard
    )
    resize = ResizeSettings(
        short_side=SHORT_SIDE,
        upscale=settings.upscale,
        jpeg_quality=settings.jpeg_quality,
        context_scale=context_scale,
        jpeg_encoder=settings.jpeg_encoder,
    )
    index = build_index(
        split="train",
        dataset="synthetic",
        classes=[str(i) for i in range(4)],
        sidecars=sidecars,
        views_per_video=VIEWS,
        sampling=sampling,
        resize=resize,
        annotation_checksums={},
        quarantined=0,
    )
    storage.write_text_atomic(storage.join(split_dir, "index.json"), index.to_json())
    return split_dir


# ------------------------------------------------------------------------------------------ pipelines


def _to_tensor_normalised(images: list[Image.Image]) -> torch.Tensor:
    """The released code's ToTorchFormatTensor + GroupNormalize on a list of PIL images -> (N, 3, S, S)."""
    arr = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (arr - mean) / std


def _group_transform(
    frames: list[Image.Image], size: int, rng: np.random.Generator, label: int
) -> torch.Tensor:
    """GroupMultiScaleCrop + GroupRandomHorizontalFlip on all frames of one sample (PIL, per frame)."""
    w, h = frames[0].size
    box = multi_scale_crop_box(w, h, size, (1, 0.875, 0.75, 0.66), rng)
    flip, _ = flip_decision(label, "random", [], rng)
    out = []
    for im in frames:
        im = im.crop(tuple(int(v) for v in box.as_tuple())).resize((size, size), Image.Resampling.BILINEAR)
        out.append(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else im)
    return _to_tensor_normalised(out)


def on_the_fly_samples(videos: list, size: int, n: int, seed: int) -> int:
    """Decode each source video with PyAV (one thread) per sample, as loaders without shards do."""
    rng = np.random.default_rng(seed)
    sampler = TrainSampler(SEGMENTS, 1)
    done = 0
    while done < n:
        for path, v in videos:
            clip = sampler.sample(v.num_frames, rng)[0]
            wanted = [f for w in clip.frame_indices for f in w]
            last = max(wanted)
            got: dict[int, Image.Image] = {}
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.codec_context.thread_count = 1
                for i, frame in enumerate(container.decode(stream)):
                    if i in wanted:
                        got[i] = frame.to_image()
                    if i >= last:
                        break
            frames = [got[min(f, max(got))] for f in wanted]
            x = _group_transform(frames, size, rng, v.label)
            assert x.shape == (SEGMENTS * 5, 3, size, size)
            done += 1
            if done >= n:
                break
    return done


def naive_shard_samples(split_dir: str, size: int, n: int, seed: int) -> int:
    """Shard JPEGs through the released code's per-frame transforms (every one of the 40 frames decoded);
    the shards are read by the project's reader (shard_reading), only the transforms are the naive part."""
    from pipeline.loading.shard_reading import iter_shard, parse_sample

    rng = np.random.default_rng(seed)
    uris = shard_uris(split_dir, read_index(split_dir))
    done = 0
    while done < n:
        for uri in uris:
            for key, sample in iter_shard(uri, None):
                meta = parse_sample(uri, key, sample).meta
                if meta.view != 0:
                    continue
                jpegs = split_jpegs(sample["frames"], meta.jpeg_sizes)
                frames = []
                for window in meta.window_positions():
                    for pos in window:
                        im = Image.open(__import__("io").BytesIO(jpegs[pos])).convert("RGB")
                        if im.size != (meta.width, meta.height):
                            im = im.resize((meta.width, meta.height), Image.Resampling.BILINEAR)
                        frames.append(im)
                x = _group_transform(frames, size, rng, meta.label)
                assert x.shape == (SEGMENTS * 5, 3, size, size)
                done += 1
                if done >= n:
                    return done
    return done


def loader_samples(split_dir: str, cfg: LoaderConfig, n: int, seed: int) -> int:
    done, epoch = 0, 0
    while done < n:
        for x, _ in train_loader(split_dir, cfg, rank=0, world_size=1, epoch=epoch, seed=seed):
            done += x.shape[0]
            if done >= n:
                break
        epoch += 1
    return done


def unverified_samples(split_dir: str, cfg: LoaderConfig, n: int, seed: int) -> int:
    """``loader_samples`` with the loader's read-time checks swapped out, here only, to measure what they cost:
    no CRC32 of each decoded JPEG (contract.check_frames), no sha256 of each shard (shard_reading.iter_shard)."""
    from pipeline.loading import batch_decode, shard_reading

    check, read = batch_decode.check_frames, shard_reading.iter_shard
    batch_decode.check_frames = lambda meta, frames, where: None  # type: ignore[assignment]
    shard_reading.iter_shard = lambda uri, expected: read(uri, None)  # type: ignore[assignment]
    try:
        return loader_samples(split_dir, cfg, n, seed)
    finally:
        batch_decode.check_frames, shard_reading.iter_shard = check, read


def timed(fn: Callable[[], int]) -> tuple[float, float]:
    """(samples per CPU-second of this process, samples per wall-second). CPU time is the per-core rate
    and does not depend on what else runs on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = fn()
    return count / (time.process_time() - cpu), count / (time.perf_counter() - wall)


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default=None, help="folder for videos and shards (default: a temporary one)")
    p.add_argument("--videos-per-class", type=int, default=4)
    p.add_argument("--size", default="426x320", help="source video WxH")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--samples", type=int, default=32, help="samples per timed run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--write-unit-costs",
        nargs="?",
        const=str(DEFAULT_PATH),
        default=None,
        metavar="PATH",
        help="record the CPU path's clips per core-second in PATH (benchmarks/unit_costs.json)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    work = Path(args.work or tempfile.mkdtemp(prefix="loader-bench-"))
    w, h = (int(v) for v in args.size.split("x"))

    t0 = time.perf_counter()
    videos = make_videos(work, (w, h), args.videos_per_class)
    full_dir = make_shards(work, videos, 1)
    half_dir = make_shards(work, videos, 2)
    print(
        f"data: {len(videos)} videos {w}x{h} H.264, {sum(v.num_frames for _, v in videos)} frames; shards "
        f"written in {time.perf_counter() - t0:.1f}s under {work}"
    )
    S, n = args.input_size, args.samples
    one_core = dict(num_workers=0, decode_threads=1, input_size=S, batch_size=8)
    runs: dict[str, Callable[[], int]] = {
        "on_the_fly_pyav": lambda: on_the_fly_samples(videos, S, n, seed=0),
        "shards_naive": lambda: naive_shard_samples(full_dir, S, n, seed=0),
        "shards_ours_no_draft": lambda: loader_samples(
            full_dir, LoaderConfig(**one_core, use_draft=False), n, 0
        ),
        "shards_ours": lambda: loader_samples(full_dir, LoaderConfig(**one_core), n, 0),
        "shards_ours_unverified": lambda: unverified_samples(full_dir, LoaderConfig(**one_core), n, 0),
        "shards_ours_uint8_out": lambda: loader_samples(
            full_dir, LoaderConfig(**one_core, output_dtype="uint8"), n, 0
        ),
        "shards_ours_half_res": lambda: loader_samples(half_dir, LoaderConfig(**one_core), n, 0),
    }
    rates: dict[str, list[float]] = {k: [] for k in runs}
    walls: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            cpu_rate, wall_rate = timed(fn)
            rates[name].append(cpu_rate)
            walls[name].append(wall_rate)
    med = {k: statistics.median(v) for k, v in rates.items()}
    base = med["on_the_fly_pyav"]
    print(
        f"\nsamples per CPU-second = samples/s per core ({SEGMENTS} segments x 5 frames, input {S}, one process, "
        f"one thread; median of {args.repeats} interleaved runs of {n} samples):"
    )
    for name in runs:
        print(
            f"  {name:24s} {med[name]:7.2f}  x{med[name] / base:5.2f} vs on-the-fly   "
            f"(cpu runs {[round(r, 2) for r in rates[name]]}, wall {[round(r, 2) for r in walls[name]]})"
        )
    # paired: each repeat runs both back to back, so the median of per-repeat ratios shares the load conditions
    paired = [1.0 - a / b for a, b in zip(rates["shards_ours"], rates["shards_ours_unverified"])]
    cost = 100.0 * statistics.median(paired)
    print(
        f"  read-time verification (frame CRC32 + shard sha256): {cost:.1f}% of loader CPU (median of the "
        f"per-repeat ratios shards_ours / shards_ours_unverified {[round(100 * c, 1) for c in paired]}; "
        "goal <= 3%)"
    )
    if args.write_unit_costs:
        command = "python -m benchmarks.loader_throughput " + " ".join(sys.argv[1:] if argv is None else argv)
        note = (
            f"row shards_ours_uint8_out, median of {args.repeats} interleaved runs of {n} samples, one "
            f"process, one thread, {len(videos)} synthetic {w}x{h} videos; shared machine (load "
            f"{os.getloadavg()[0]:.0f})"
        )
        cost = LoaderCost(
            decode="cpu",
            input_size=S,
            clips_per_core_s=med["shards_ours_uint8_out"],
            source=here(command, note),
        )
        update_unit_costs(Path(args.write_unit_costs), loader=cost)
        print(
            f"  unit costs -> {args.write_unit_costs}: cpu decode path {cost.clips_per_core_s:.2f} clips "
            f"per core-second at {S} px"
        )
    two = LoaderConfig(num_workers=0, decode_threads=2, input_size=S, batch_size=8)
    cpu_rate, wall_rate = timed(lambda: loader_samples(full_dir, two, n, 0))
    print(
        f"  shards_ours with 2 decode threads: {wall_rate:.2f} samples/s wall on this shared 2-core machine "
        f"({cpu_rate:.2f} per CPU-second)"
    )

    fb, fs = split_bytes(full_dir)
    hb, hs = split_bytes(half_dir)
    effect = half_resolution_effect(full_dir, half_dir, S)
    print(
        f"\nhalf-resolution neighbours: {hb / hs / 1024:.1f} KiB/sample vs {fb / fs / 1024:.1f} KiB/sample full "
        f"({hb / fb:.2f}x bytes); relative L2 change vs full-res storage: S-TDM input avgpool2(diff) "
        f"{effect['rel_err_pooled']:.3f} (neighbour-neighbour diffs {effect['rel_err_pooled_neighbours']:.3f}, "
        f"diffs with the centre frame {effect['rel_err_pooled_centre']:.3f}), raw diff {effect['rel_err_raw']:.3f}, "
        f"centre (RGB) frame {effect['rel_err_centre']:.4f}"
    )

    return 0


if __name__ == "__main__":
    raise SystemExit(main())
