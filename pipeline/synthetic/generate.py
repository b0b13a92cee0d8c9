"""Motion-only synthetic video datasets in official dataset layouts.

    videos = generate(SyntheticConfig(classes=4, videos_per_class=8, codec="h264", layout="ucf101"), out)
    python -m jobs.synthetic OUT --classes 4 --videos-per-class 8 [--layout ucf101|hmdb51|ssv1] ...

Writes really encoded videos (PyAV; H.264 .mp4, MPEG-4 part 2 .avi or VP9 .webm) or, for Something-Something
V1, folders of JPEG frames, plus the annotation files of the chosen dataset in its official format, so that the
data flows through the same parsers as real data:

- ucf101: ``<Class>/v_<Class>_gNN_cMM.<ext>`` and ``ucfTrainTestlist/`` (classInd.txt, trainlist0{1,2,3}.txt,
  testlist0{1,2,3}.txt; CRLF; test lists without labels; split k tests on groups 7k-6..7k as in UCF101).
- hmdb51: ``<class>/<name>.avi`` and ``testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt``
  (``name.avi 1|2|0`` with a trailing space; 1 = train, 2 = test, 0 = unused).
- ssv1: ``20bn-something-something-v1/<id>/00001.jpg...`` and ';'-separated
  ``something-something-v1-{labels,train,validation,test}.csv``.

Classes differ only in motion (see pipeline/synthetic/render.py). ``synthetic_manifest.json`` lists every
video with its class, frame count, fps and size. Everything is deterministic for a seed: each video's
random stream is derived from (seed, video name), and the encoders run single-threaded.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from PIL import Image

from pipeline.shards.sampling import rng_for
from pipeline.synthetic.render import MOTION_CLASSES, MotionClass, render_clip

Codec = Literal["h264", "mpeg4", "vp9"]
Layout = Literal["ucf101", "hmdb51", "ssv1"]

_CODECS: dict[str, tuple[str, str, dict[str, str]]] = {  # codec -> (extension, encoder, options)
    # mbtree off: with it x264 was seen to encode the same frames differently from run to run (tiny frames)
    "h264": (".mp4", "libx264", {"crf": "18", "preset": "veryfast", "x264-params": "mbtree=0"}),
    "mpeg4": (".avi", "mpeg4", {"qscale": "3"}),
    "vp9": (".webm", "libvpx-vp9", {"crf": "24", "b": "0", "deadline": "realtime", "cpu-used": "8"}),
}


@dataclass(frozen=True)
class SyntheticConfig:
    classes: int = 4  # motion classes
    videos_per_class: int = 8  # videos per class
    seed: int = 0  # seed of every random choice (same seed, same videos)
    codec: Codec = "h264"  # video codec of the files (ssv1 layout: JPEG frame folders)
    layout: Layout = "ucf101"  # the dataset layout written (folders and annotation lists)
    min_frames: int = 24  # shortest video, in frames
    max_frames: int = 72  # longest video, in frames
    sizes: tuple[tuple[int, int], ...] = ((96, 72), (112, 84), (128, 96), (80, 60))  # (width, height)
    fps: tuple[int, ...] = (15, 24, 25, 30)  # frame rates drawn from
    jpeg_quality: int = 90  # ssv1 frames
    # Which motions, by name (MotionClass.motion, e.g. "pan_left"); empty = the first `classes` of MOTION_CLASSES.
    motions: tuple[str, ...] = ()

    def motion_classes(self) -> list[MotionClass]:
        if not self.motions:
            return list(MOTION_CLASSES[: self.classes])
        by_name: dict[str, MotionClass] = {mc.motion: mc for mc in MOTION_CLASSES}
        unknown = [m for m in self.motions if m not in by_name]
        if unknown:
            raise ValueError(f"unknown motion {unknown[0]!r}; known: {', '.join(by_name)}")
        return [by_name[m] for m in self.motions]


@dataclass(frozen=True)
class SyntheticVideo:
    path: str  # relative to the output root (a frame folder for ssv1)
    class_name: str
    label: int  # 0-based class index
    motion: str
    num_frames: int
    fps: int
    width: int
    height: int


def check_config(cfg: SyntheticConfig) -> None:
    if not 1 <= cfg.classes <= len(MOTION_CLASSES):
        raise ValueError(f"--classes must be in 1..{len(MOTION_CLASSES)}, got {cfg.classes}")
    if cfg.motions and (len(cfg.motions) != cfg.classes or len(set(cfg.motions)) != len(cfg.motions)):
        raise ValueError(f"--motions must name {cfg.classes} different motions, got {list(cfg.motions)}")
    cfg.motion_classes()
    if cfg.videos_per_class < 1:
        raise ValueError(f"--videos-per-class must be >= 1, got {cfg.videos_per_class}")
    if not 1 <= cfg.min_frames <= cfg.max_frames:
        raise ValueError(f"need 1 <= --min-frames <= --max-frames, got {cfg.min_frames}, {cfg.max_frames}")
    for w, h in cfg.sizes:
        if w < 16 or h < 16 or (cfg.layout != "ssv1" and (w % 2 or h % 2)):
            raise ValueError(f"size {w}x{h}: need >= 16 and even sides (yuv420p)")
    if not cfg.fps or min(cfg.fps) < 1:
        raise ValueError(f"bad --fps {cfg.fps}")


def encode_video(frames: np.ndarray, path: Path, codec: Codec, fps: int) -> None:
    """Encode (T, H, W, 3) uint8 RGB frames; writes to a temporary name first so no partial file remains."""
    _, encoder, options = _CODECS[codec]
    tmp = path.with_name(path.name + ".part")
    fmt = {"h264": "mp4", "mpeg4": "avi", "vp9": "webm"}[codec]
    # bitexact: no random container ids (Matroska) or version strings, so equal frames give equal bytes
    with av.open(str(tmp), mode="w", format=fmt, options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(encoder, rate=Fraction(fps, 1))
        if not isinstance(stream, av.VideoStream):  # every encoder in _CODECS is a video encoder
            raise TypeError(f"{encoder} opened a {type(stream).__name__}, not a video stream")
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = dict(options)
        stream.codec_context.thread_count = 1  # single-threaded encoders give identical bytes on every run
        if codec == "mpeg4":
            stream.codec_tag = "XVID"  # what UCF101/HMDB51 ship
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    os.replace(tmp, path)


def write_jpeg_folder(frames: np.ndarray, folder: Path, quality: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, rgb in enumerate(frames):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
        (folder / f"{i + 1:05d}.jpg").write_bytes(buf.getvalue())


def _render(cfg: SyntheticConfig, mc: MotionClass, name: str) -> tuple[np.ndarray, int]:
    rng = rng_for(cfg.seed, name, "synthetic")
    num_frames = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
    width, height = cfg.sizes[int(rng.integers(0, len(cfg.sizes)))]
    fps = int(cfg.fps[int(rng.integers(0, len(cfg.fps)))])
    return render_clip(mc.motion, num_frames, height, width, rng), fps


def _record(path: str, mc: MotionClass, name_of_class: str, label: int, frames: np.ndarray, fps: int):
    t, h, w, _ = frames.shape
    return SyntheticVideo(path, name_of_class, label, mc.motion, t, fps, w, h)


def _ucf_group_clip(j: int, per_class: int) -> tuple[int, int]:
    """Spread a class's videos over UCF101's 25 groups so that all three splits get test videos."""
    used = min(per_class, 25)
    return 1 + (j % used) * 25 // used, 1 + j // used


def _crlf(lines: list[str]) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


def write_ucf101(cfg: SyntheticConfig, out: Path) -> list[SyntheticVideo]:
    ext = _CODECS[cfg.codec][0]
    classes = cfg.motion_classes()
    videos: list[SyntheticVideo] = []
    for label, mc in enumerate(classes):
        (out / mc.ucf_name).mkdir(parents=True, exist_ok=True)
        for j in range(cfg.videos_per_class):
            g, c = _ucf_group_clip(j, cfg.videos_per_class)
            rel = f"{mc.ucf_name}/v_{mc.ucf_name}_g{g:02d}_c{c:02d}{ext}"
            frames, fps = _render(cfg, mc, rel)
            encode_video(frames, out / rel, cfg.codec, fps)
            videos.append(_record(rel, mc, mc.ucf_name, label, frames, fps))
    lists = out / "ucfTrainTestlist"
    lists.mkdir(exist_ok=True)
    (lists / "classInd.txt").write_bytes(_crlf([f"{i + 1} {mc.ucf_name}" for i, mc in enumerate(classes)]))
    ordered = sorted(videos, key=lambda v: (v.label, v.path))
    for split in (1, 2, 3):
        test_groups = range(7 * split - 6, 7 * split + 1)
        is_test = [int(v.path.rsplit("_g", 1)[1][:2]) in test_groups for v in ordered]
        train = [f"{v.path} {v.label + 1}" for v, t in zip(ordered, is_test) if not t]
        test = [v.path for v, t in zip(ordered, is_test) if t]
        (lists / f"trainlist{split:02d}.txt").write_bytes(_crlf(train))
        (lists / f"testlist{split:02d}.txt").write_bytes(_crlf(test))
    return videos


def write_hmdb51(cfg: SyntheticConfig, out: Path) -> list[SyntheticVideo]:
    ext = _CODECS[cfg.codec][0]
    videos: list[SyntheticVideo] = []
    splits = out / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True, exist_ok=True)
    for label, mc in enumerate(sorted(cfg.motion_classes(), key=lambda m: m.hmdb_name)):
        (out / mc.hmdb_name).mkdir(parents=True, exist_ok=True)
        names = []
        for j in range(cfg.videos_per_class):
            name = f"Synthetic_Clip_{j // 3:02d}_{mc.hmdb_name}_f_cm_np{1 + j % 3}_le_med_{j}{ext}"
            rel = f"{mc.hmdb_name}/{name}"
            frames, fps = _render(cfg, mc, rel)
            encode_video(frames, out / rel, cfg.codec, fps)
            videos.append(_record(rel, mc, mc.hmdb_name, label, frames, fps))
            names.append(name)
        n_test = max(1, round(0.3 * len(names))) if len(names) > 1 else 0
        n_unused = len(names) // 10
        for split in (1, 2, 3):
            order = rng_for(cfg.seed, mc.hmdb_name, f"hmdb-split{split}").permutation(len(names))
            flag = {}
            for rank, idx in enumerate(order):
                flag[names[idx]] = 2 if rank < n_test else 0 if rank < n_test + n_unused else 1
            # the official files end every line with a space before the newline
            text = "".join(f"{n} {flag[n]} \n" for n in sorted(names))
            (splits / f"{mc.hmdb_name}_test_split{split}.txt").write_text(text)
    return videos


def write_ssv1(cfg: SyntheticConfig, out: Path) -> list[SyntheticVideo]:
    frames_root = out / "20bn-something-something-v1"
    classes = cfg.motion_classes()
    total = cfg.classes * cfg.videos_per_class
    ids = (rng_for(cfg.seed, "ssv1", "ids").permutation(total * 3)[:total] + 1).tolist()
    videos: list[SyntheticVideo] = []
    rows: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    for label, mc in enumerate(classes):
        for j in range(cfg.videos_per_class):
            vid = str(ids[label * cfg.videos_per_class + j])
            frames, fps = _render(cfg, mc, f"ssv1/{vid}")
            write_jpeg_folder(frames, frames_root / vid, cfg.jpeg_quality)
            videos.append(_record(f"20bn-something-something-v1/{vid}", mc, mc.sentence, label, frames, fps))
            # 8:1:1 by position within the class (every class present in each split when it has >= 3 videos)
            part = "validation" if j % 10 == 8 else "test" if j % 10 == 9 else "train"
            if cfg.videos_per_class >= 3 and j == cfg.videos_per_class - 1 and part == "train":
                part = "test"
            if cfg.videos_per_class >= 3 and j == cfg.videos_per_class - 2 and part == "train":
                part = "validation"
            rows[part].append(vid if part == "test" else f"{vid};{mc.sentence}")
    prefix = "something-something-v1"
    (out / f"{prefix}-labels.csv").write_text("".join(mc.sentence + "\n" for mc in classes))
    for part, lines in rows.items():
        (out / f"{prefix}-{part}.csv").write_text("".join(line + "\n" for line in lines))
    return videos


def generate(cfg: SyntheticConfig, out: str | os.PathLike) -> list[SyntheticVideo]:
    """Write the dataset under ``out`` and return its videos (also written to synthetic_manifest.json)."""
    check_config(cfg)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    if cfg.layout == "ucf101":
        videos = write_ucf101(cfg, root)
    elif cfg.layout == "hmdb51":
        videos = write_hmdb51(cfg, root)
    elif cfg.layout == "ssv1":
        videos = write_ssv1(cfg, root)
    else:
        raise ValueError(f"unknown layout {cfg.layout!r}")
    manifest = {"config": asdict(cfg), "videos": [asdict(v) for v in videos]}
    (root / "synthetic_manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return videos


def load_manifest(out: str | os.PathLike) -> list[SyntheticVideo]:
    data = json.loads((Path(out) / "synthetic_manifest.json").read_text())
    return [SyntheticVideo(**v) for v in data["videos"]]
