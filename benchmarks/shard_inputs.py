"""What the shard benchmark (benchmarks/shard_throughput.py) feeds and times besides its routes: the videos it
encodes (a panned textured scene with moving objects and film grain, so the encoder has real motion and
residuals to code), its CPU-time helper, and a side comparison of JPEG encoders."""

from __future__ import annotations

import io
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

from pipeline.shards.frame_convert import output_size

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
            scaled = scaler.reformat(f, width=width, height=height, threads=1)
            rgb = to_rgb.reformat(scaled, format="rgb24", threads=1).to_ndarray()
            Image.fromarray(rgb).save(io.BytesIO(), format="JPEG", quality=quality)

    def mjpeg() -> None:
        ctx = av.CodecContext.create("mjpeg", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuvj420p"
        ctx.time_base = fractions.Fraction(1, 25)
        ctx.qscale = 3  # about the size of PIL's quality 90
        ctx.open()
        for i, f in enumerate(decoded):
            y = to_yuvj.reformat(f, width=width, height=height, format="yuvj420p", threads=1)
            y.pts, y.time_base = i, ctx.time_base
            ctx.encode(y)

    def yuv_planes() -> None:
        import simplejpeg

        for f in decoded:
            y = to_yuvj.reformat(
                f, width=width, height=height, format="yuvj420p", dst_colorspace="ITU601", threads=1
            )
            planes = [
                np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[: p.height, : p.width] for p in y.planes
            ]
            simplejpeg.encode_jpeg_yuv_planes(*(np.ascontiguousarray(p) for p in planes), quality=quality)

    t_pil, t_mjpeg = timed(pil, 3) / frames, timed(mjpeg, 3) / frames
    t_planes = timed(yuv_planes, 3) / frames
    print(
        f"JPEG encoders at {width}x{height}, resize included: PIL from RGB {1000 * t_pil:.3f} ms/frame, "
        f"PyAV mjpeg from yuvj420p {1000 * t_mjpeg:.3f} ms/frame, simplejpeg from YUV planes "
        f"{1000 * t_planes:.3f} ms/frame"
    )
