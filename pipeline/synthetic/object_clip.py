"""One small moving object on a static textured background, with the object's box in every frame: clips where
the only evidence of the class is inside a known box (the Grad-CAM test: does the model look there?).

    render_object_clip(motion, num_frames, height, width, rng) -> ObjectClip
        frames (F, H, W, 3) uint8   a static background of the same smooth two-colour textures the motion
                                    dataset uses (pipeline/synthetic/render.py), the object a textured square
                                    of ``OBJECT_SIDE`` of the shorter side, drawn from the same texture family
        boxes  (F, 4) float32       the object's (left, top, right, bottom) in pixels in each frame

The class is the object's direction (``DIRECTIONS``: left, right, up, down); its speed is 1.5-2.5 % of the
shorter side per frame and its path stays inside the frame (no wrap), so its box is always one rectangle.
Any single frame looks the same whatever the class; only the object's displacement over frames tells them
apart, and it happens inside the box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.synthetic.render import random_pattern

OBJECT_SIDE = 0.25  # the object's side, fraction of the frame's shorter side (6 % of a square frame's area)
DIRECTIONS: dict[str, tuple[float, float]] = {  # (dx, dy), y pointing down
    "move_left": (-1.0, 0.0),
    "move_right": (1.0, 0.0),
    "move_up": (0.0, -1.0),
    "move_down": (0.0, 1.0),
}


@dataclass(frozen=True)
class ObjectClip:
    frames: np.ndarray  # (F, H, W, 3) uint8
    boxes: np.ndarray  # (F, 4) float32: left, top, right, bottom in pixels

    def box_mask(self, frame: int, height: int, width: int) -> np.ndarray:
        """(height, width) bool: pixels inside the object's box of ``frame``, at another resolution of the
        same field of view (the box scaled by height / H and width / W)."""
        h, w = self.frames.shape[1:3]
        left, top, right, bottom = self.boxes[frame] * np.array(
            [width / w, height / h, width / w, height / h]
        )
        ys, xs = np.mgrid[0:height, 0:width] + 0.5
        return (xs >= left) & (xs < right) & (ys >= top) & (ys < bottom)


def render_object_clip(
    motion: str, num_frames: int, height: int, width: int, rng: np.random.Generator
) -> ObjectClip:
    """One clip of ``motion`` (a key of DIRECTIONS); appearance is drawn before the motion, alike for every
    class."""
    if motion not in DIRECTIONS:
        raise ValueError(f"unknown motion {motion!r}; known: {', '.join(DIRECTIONS)}")
    side = max(4.0, OBJECT_SIDE * min(height, width))
    background = random_pattern(rng, (2.0, 5.0))
    texture = random_pattern(rng, (0.6, 1.6))
    speed = float(rng.uniform(0.015, 0.025)) * min(height, width)
    dx, dy = DIRECTIONS[motion]
    travel_x, travel_y = abs(dx) * speed * (num_frames - 1), abs(dy) * speed * (num_frames - 1)
    # a start that keeps the whole path inside the frame, drawn the same way for opposite directions
    x0 = float(rng.uniform(0, max(width - side - travel_x, 0.0)))
    y0 = float(rng.uniform(0, max(height - side - travel_y, 0.0)))
    if dx < 0:
        x0 += travel_x
    if dy < 0:
        y0 += travel_y
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    scene = background.colours(xs / width, ys / height)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    boxes = np.empty((num_frames, 4), dtype=np.float32)
    for i in range(num_frames):
        left, top = x0 + dx * speed * i, y0 + dy * speed * i
        boxes[i] = (left, top, left + side, top + side)
        # the texture moves with the object (object coordinates); a one-pixel soft edge against aliasing
        u, v = (xs - left) / side, (ys - top) / side
        inside = np.clip(
            np.minimum(np.minimum(xs - left, left + side - xs), np.minimum(ys - top, top + side - ys)), 0, 1
        )
        img = scene * (1 - inside[..., None]) + texture.colours(u, v) * inside[..., None]
        frames[i] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return ObjectClip(frames, boxes)
