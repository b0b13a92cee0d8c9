"""Grad-CAM strips for report.html: where the model looked in videos of its most-confused pairs.

    VideoScores --metrics.confusion_matrix--> cm --reporting.confusion.most_confused--> pairs (true, predicted)
      per pair, in order: the video of that pair the model was surest of (highest predicted-class score)
      -> its first view, found in the split's shards (a shard whose sidecar, <shard>.tar.json, does not list
         the video is not opened; shards without sidecars are read until every video is found)
      -> the evaluation loader's crops (eval_boxes, decode_rows: the view the model scored; the centre crop
         of 3) -> Grad-CAM of the predicted class (tdn/model/gradcam.py, its pick_layer) -> cam_strip_png
    -> [ReportFigure] captioned "<video>: true A, predicted B (p %)"

Runs on the driver after scoring, on the CPU: one forward and backward pass per strip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.loading.batch_decode import DecodeJob, decode_rows
from pipeline.loading.config import LoaderConfig
from pipeline.loading.shard_reading import RawSample, iter_shard, parse_sample
from pipeline.loading.transforms import eval_boxes, normalise_uint8
from pipeline.shards.writer import read_sidecar
from tdn.evaluation.metrics import VideoScores, confusion_matrix
from tdn.evaluation.model_source import LoadedModel
from tdn.evaluation.protocol import EvalProtocol
from tdn.evaluation.replica_pool import build_replica_model
from tdn.evaluation.split import EvalSplit
from tdn.model.gradcam import grad_cam, pick_layer
from tdn.reporting.cam_strip import cam_strip_png
from tdn.reporting.confusion import ConfusedPair, most_confused
from tdn.reporting.html_report import ReportFigure


def pick_videos(
    video: VideoScores, names: Sequence[str], count: int
) -> list[tuple[str, ConfusedPair, float]]:
    """(video id, its pair, its predicted-class score) for up to ``count`` most-confused pairs, one video each."""
    num_classes = video.scores.shape[1]
    pairs = most_confused(confusion_matrix(video.scores, video.labels, num_classes), names, count)
    predicted = np.argmax(video.scores, axis=1)
    picks = []
    for pair in pairs:
        mine = np.flatnonzero((video.labels == pair.true_index) & (predicted == pair.predicted_index))
        if len(mine):
            best = mine[np.argmax(video.scores[mine, pair.predicted_index])]
            picks.append((str(video.video_ids[best]), pair, float(video.scores[best, pair.predicted_index])))
    return picks


def find_samples(split: EvalSplit, wanted: set[str]) -> dict[str, RawSample]:
    """The first view of each wanted video, read from the split's shards (verified as evaluation reads them)."""
    found: dict[str, RawSample] = {}
    for uri, entry in zip(split.uris, split.entries):
        sidecar = read_sidecar(split.folder, entry.name)
        if sidecar is not None and not wanted.intersection(sidecar.video_ids):
            continue
        for key, sample in iter_shard(uri, entry):
            raw = parse_sample(uri, key, sample)
            if raw.meta.video_id in wanted and raw.meta.video_id not in found and raw.meta.view == 0:
                found[raw.meta.video_id] = raw
        if len(found) == len(wanted):
            break
    return found


def confusion_cams(
    loaded: LoadedModel, split: EvalSplit, protocol: EvalProtocol, video: VideoScores, count: int
) -> list[ReportFigure]:
    """Grad-CAM strips of one video of each of the ``count`` most-confused pairs (module docstring)."""
    names = list(split.index.classes or loaded.class_names) or [str(i) for i in range(video.scores.shape[1])]
    picks = pick_videos(video, names, count)
    if not picks:
        return []
    samples = find_samples(split, {vid for vid, _, _ in picks})
    model = build_replica_model(loaded.model_config, loaded.state_dict, "cpu")
    cfg = LoaderConfig(
        input_size=protocol.input_size, eval_short_side=protocol.short_side, eval_crops=protocol.crops
    )
    size = protocol.view_side
    figures = []
    for vid, pair, score in picks:
        raw = samples.get(vid)
        if raw is None:
            continue
        meta = raw.meta
        boxes = eval_boxes(meta.width, meta.height, protocol.short_side, protocol.input_size, protocol.crops)
        box = boxes[2] if protocol.crops == 3 else boxes[0]  # the centre crop
        x = decode_rows([DecodeJob(meta, raw.frames, raw.where, [(0, box, False)])], 1, size, cfg, None)
        recipe = loaded.recipe
        clip = normalise_uint8(x.permute(0, 1, 2, 5, 3, 4), mean=recipe.mean, std=recipe.std)
        cam = grad_cam(model, clip, pair.predicted_index, pick_layer(size))
        title = f"{vid}: true {pair.true_name}, predicted {pair.predicted_name} ({100.0 * score:.1f}%)"
        labels = [f"frame {w[2]}" for w in meta.frame_indices]
        png = cam_strip_png(x[0, :, 2].numpy(), cam, title, labels)
        figures.append(ReportFigure(title, png))
    return figures
