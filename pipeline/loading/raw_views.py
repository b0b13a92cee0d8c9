"""A raw video file -> the model's views, through the shard job's decoding and sampling and the loader's crops.

    path --shards.sampled_decode.decode_sampled (open_source, probe, CentreSampler | MultiClipSampler,
           one decode pass, the frames as the shard writer stores them: short side ``short_side`` (never
           upscaled, as shards with upscale off), a JPEG of the YUV 4:2:0 planes at ``jpeg_quality``)-->
         SampledFrames: per clip, its unique frames and its T x 5 window positions
      --transforms.eval_boxes (1 centre crop | 3 crops, the evaluation loader's geometry)-->
      --jpeg_decode.decode_sample (the loader's JPEG decode, crop and resize)-->
    RawViews: x uint8 (V, T, 5, S, S, 3), V = clips x crops (row = clip * crops + crop), the clips' source
              frame indices and each crop's box mapped back to source-frame pixels

Why through JPEG, at quality 100: it is the shards' own route from the decoded YUV frame to RGB (libjpeg's
chroma upsampling and full-range BT.601 conversion). swscale's direct RGB conversion put the frames 0.7-1.4
grey levels further from the rendered source than this route (24 synthetic clips, mean absolute error: H.264
3.74 vs 2.70, MPEG-4 7.12 vs 6.38, VP9 4.23 vs 2.86) and a trained model's logits up to 3.0 away from its
logits on the shards (1.2 this way). Through
the same route, shards written at quality 100 give the same logits (tests/test_predict_agreement.py); at
the shards' default 90 what differs is their JPEG loss. Cost: a JPEG encode and decode per sampled frame.
A video's sampling is seeded from (seed, video_id, "test") as the shard job seeds a test split's, so a
multi-clip protocol repeats itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch

from pipeline.loading.jpeg_decode import CropTarget, decode_sample
from pipeline.loading.transforms import CropBox, eval_boxes
from pipeline.shards.decode_types import DecodeResult, FrameRequest
from pipeline.shards.frame_folder import FrameFolder
from pipeline.shards.sampled_decode import DecodeOptions, SampledFrames, decode_sampled
from pipeline.shards.sampling import CentreSampler, MultiClipSampler, Sampler, rng_for
from pipeline.shards.video_file import VideoFile

SPLIT_SALT = (
    "test"  # the shard job seeds each video's sampling with its split name: predict's are test videos
)


@dataclass(frozen=True)
class ViewSettings:
    """How a raw video becomes views: the model's segments and a protocol's clips x crops and sizes."""

    num_segments: int
    clips: int  # 1: the centre clip (CentreSampler); more: that many random clips (MultiClipSampler)
    crops: Literal[1, 3]  # 1: centre crop of input_size; 3: crops of short_side along the longer side
    input_size: int  # output side of a 1-crop view
    short_side: int  # frames resized to this shorter side before cropping
    seed: int = 0  # sampling seed of multi-clip protocols (the shard job's seed)
    decode_threads: int = 1
    jpeg_quality: int = 100  # frames take the shards' route to RGB (JPEG of the YUV planes) at this quality

    @property
    def out_size(self) -> int:
        return self.input_size if self.crops == 1 else self.short_side

    def sampler(self) -> Sampler:
        if self.clips == 1:
            return CentreSampler(self.num_segments)
        return MultiClipSampler(self.num_segments, self.clips)


@dataclass
class RawViews:
    """One video's views, ready to normalise and score."""

    x: torch.Tensor  # uint8 (V, T, 5, S, S, 3), V = clips x crops, row = clip * crops + crop
    frame_indices: list[list[list[int]]]  # per clip: T windows x 5 source frame indices
    boxes: list[CropBox]  # per crop, in source-frame pixels (left, top, right, bottom)
    source_size: tuple[int, int]  # (width, height) of the source frames as displayed
    frame_size: tuple[int, int]  # (width, height) of the decoded frames the crops were taken from
    num_frames: int  # frames the clips were sampled from (decodable frames when the file was short)
    clamped: bool  # the file held fewer decodable frames than packets (damaged tail)

    @property
    def clips(self) -> int:
        return len(self.frame_indices)


def read_views(path: str, video_id: str, settings: ViewSettings) -> RawViews:
    """Decode, sample and crop one video; raises ``VideoError`` (its stage: missing, open, probe, decode)."""
    source_sizes: list[tuple[int, int]] = []

    def produce(
        source: VideoFile | FrameFolder, wanted: list[FrameRequest], result: DecodeResult
    ) -> Iterable[tuple[FrameRequest, bytes, tuple[int, int]]]:
        frames = source.jpegs(
            wanted, settings.short_side, settings.jpeg_quality, "simplejpeg", result, upscale=False
        )
        for request, jpeg, size in frames:
            if not source_sizes and source.source_size is not None:
                source_sizes.append(source.source_size)
            yield request, jpeg, size

    options = DecodeOptions(decode_threads=settings.decode_threads)
    rng = rng_for(settings.seed, video_id, SPLIT_SALT)
    decoded = decode_sampled(path, settings.sampler(), rng, options, produce)
    height, width = decoded.full_size
    boxes = eval_boxes(width, height, settings.short_side, settings.input_size, settings.crops)
    x = crop_views(decoded, boxes, settings.out_size)
    source_w, source_h = source_sizes[0] if source_sizes else (width, height)
    sx, sy = source_w / width, source_h / height
    return RawViews(
        x=x,
        frame_indices=[[list(w) for w in clip.frame_indices] for clip in decoded.clips],
        boxes=[CropBox(b.left * sx, b.top * sy, b.right * sx, b.bottom * sy) for b in boxes],
        source_size=(source_w, source_h),
        frame_size=(width, height),
        num_frames=decoded.num_frames,
        clamped=decoded.result.clamped,
    )


def crop_views(decoded: SampledFrames[bytes], boxes: list[CropBox], out_size: int) -> torch.Tensor:
    """uint8 (clips x crops, T, 5, S, S, 3): each clip's frames decoded and cropped at every box, as the
    evaluation loader does (jpeg_decode.decode_sample)."""
    t, window = len(decoded.clips[0].frame_indices), len(decoded.clips[0].frame_indices[0])
    out = torch.empty((len(decoded.clips) * len(boxes), t, window, out_size, out_size, 3), dtype=torch.uint8)
    flat = out.view(out.shape[0], t * window, out_size, out_size, 3)
    for k in range(len(decoded.clips)):
        positions = [p for window_pos in decoded.window_positions(k) for p in window_pos]
        targets = [CropTarget(box, False, flat[k * len(boxes) + c]) for c, box in enumerate(boxes)]
        decode_sample(
            decoded.clip_payloads(k), decoded.full_size[1], decoded.full_size[0], positions, targets
        )
    return out
