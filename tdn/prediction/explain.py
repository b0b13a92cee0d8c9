"""Grad-CAM files of one video, for a reviewer (the PNG strip) and for a script (the array and its geometry).

    DIR/<video name>-<sha1(video)[:8]>/
        cam.png    the T sampled centre frames (the crop the model saw) with the map overlaid; title: class,
                   probability, video (tdn/reporting/cam_strip.py)
        cam.npy    float32 (T, S, S) in [0, 1], S = the crop's side: map t belongs to segment t
        cam.json   Explanation: the video, model, class (name, index) and its probability, the layer, the
                   source frame index of each map (the centre frame of segment t's window), the crop box in
                   source-frame pixels (left, top, right, bottom; rotation applied, as a player shows the frame)
                   and the source frame size

Mapping the heat back onto the video: map t covers ``crop_box`` of source frame ``frame_indices[t]``; pixel
(i, j) of the map is source pixel (left + (j + 0.5) * w / S, top + (i + 0.5) * h / S), w and h the box's
size. Files are written atomically (local or s3://).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
from dataclasses import dataclass

import numpy as np

from pipeline import storage
from tdn.reporting.cam_strip import cam_strip_png

FILES = ("cam.png", "cam.npy", "cam.json")


@dataclass(frozen=True)
class Explanation:
    """cam.json: what the map explains and where it lies in the source video."""

    video: str  # the video as the prediction output names it
    model: str  # the model URI
    class_name: str
    class_index: int
    probability: float  # the video's probability of the class (mean over its views)
    layer: str  # the layer whose activations and gradients make the map
    frame_indices: list[int]  # per map: the source frame index (0-based, presentation order)
    crop_box: tuple[float, float, float, float]  # left, top, right, bottom in source-frame pixels
    source_size: tuple[int, int]  # (width, height) of the source frames as displayed
    crop: int  # which crop of the view (0, or 2 = the centre of 3)
    cam_shape: tuple[int, int, int] = (0, 0, 0)  # (T, S, S) of cam.npy (filled in when written)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, ensure_ascii=False) + "\n"


def explanation_folder(root: str, video: str) -> str:
    """``root/<name>-<hash>``: readable, and unique for videos of the same name in different folders."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", video.rstrip("/").rsplit("/", 1)[-1])[:80] or "video"
    return storage.join(root, f"{name}-{hashlib.sha1(video.encode('utf-8')).hexdigest()[:8]}")


def write_explanation(root: str, explanation: Explanation, cam: np.ndarray, frames: np.ndarray) -> str:
    """Write the three files for ``cam`` (T, S, S) float in [0, 1] and ``frames`` (T, S, S, 3) uint8, the
    crops the map covers; returns the folder."""
    if cam.ndim != 3 or frames.shape[:3] != cam.shape or cam.min() < 0 or cam.max() > 1:
        raise ValueError(f"cam {cam.shape} in [0, 1] and frames (T, S, S, 3) {frames.shape} must agree")
    folder = explanation_folder(root, explanation.video)
    t, h, w = cam.shape
    explanation = dataclasses.replace(explanation, cam_shape=(t, h, w))
    title = f"{explanation.class_name} {100.0 * explanation.probability:.1f}%  ({explanation.video})"
    labels = [f"frame {i}" for i in explanation.frame_indices]
    buf = io.BytesIO()
    np.save(buf, cam.astype(np.float32), allow_pickle=False)
    storage.makedirs(folder)
    storage.write_bytes_atomic(storage.join(folder, "cam.npy"), buf.getvalue())
    storage.write_text_atomic(storage.join(folder, "cam.json"), explanation.to_json())
    storage.write_bytes_atomic(storage.join(folder, "cam.png"), cam_strip_png(frames, cam, title, labels))
    return folder
