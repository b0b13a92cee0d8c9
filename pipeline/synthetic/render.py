"""Rendering of motion-only synthetic clips: the classes differ in how things move, never in how they look.

Each clip is textured objects (squares / ellipses filled with smooth two-colour patterns) over a smooth,
periodic two-colour background. Appearance (colours, patterns, shapes, sizes, positions) is drawn the same way
for every class; the class only chooses the motion. Every motion is stationary in time -- positions wrap
around the frame (a torus), zooming objects run through a cycle of sizes (growing, fading, re-spawning small
elsewhere) whose phase is uniform, and non-zooming objects take a size from that same cycle; orientations are
uniform -- so the distribution of any single frame is the same for every class (a left-moving clip is the
time reverse of a right-moving one), while the order of frames tells them apart.

Motion strength: translations move 1.5-3 px/frame at a 72 px short side (scaled with the frame), rotations
4-8 degrees/frame, zooms 4-6 % of size per frame, so 5-frame difference windows show them clearly.

    render_clip(motion, num_frames, height, width, rng) -> uint8 array (T, H, W, 3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Motion = Literal[
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "zoom_in",
    "zoom_out",
    "rotate_cw",
    "rotate_ccw",
    "speed_up",
    "slow_down",
    "pan_left",
    "pan_right",
    "move_up_left",
    "move_down_right",
    "move_up_right",
    "move_down_left",
]


@dataclass(frozen=True)
class MotionClass:
    motion: Motion
    ucf_name: str  # UCF101-style CamelCase class name
    hmdb_name: str  # HMDB51-style lower_case name
    sentence: str  # Something-Something-style label text


# Opposite motions are adjacent, so any even number of classes holds complete pairs.
MOTION_CLASSES: tuple[MotionClass, ...] = (
    MotionClass("move_left", "MoveLeft", "move_left", "Moving something from right to left"),
    MotionClass("move_right", "MoveRight", "move_right", "Moving something from left to right"),
    MotionClass("move_up", "MoveUp", "move_up", "Moving something up"),
    MotionClass("move_down", "MoveDown", "move_down", "Moving something down"),
    MotionClass("zoom_in", "ZoomIn", "zoom_in", "Pushing something towards the camera"),
    MotionClass("zoom_out", "ZoomOut", "zoom_out", "Pulling something away from the camera"),
    MotionClass("rotate_cw", "RotateClockwise", "rotate_clockwise", "Turning something clockwise"),
    MotionClass(
        "rotate_ccw",
        "RotateCounterClockwise",
        "rotate_counter_clockwise",
        "Turning something counterclockwise",
    ),
    MotionClass("speed_up", "SpeedUp", "speed_up", "Pushing something so that it speeds up"),
    MotionClass("slow_down", "SlowDown", "slow_down", "Letting something slow down"),
    MotionClass("pan_left", "PanLeft", "pan_left", "Turning the camera left while filming something"),
    MotionClass("pan_right", "PanRight", "pan_right", "Turning the camera right while filming something"),
    MotionClass("move_up_left", "MoveUpLeft", "move_up_left", "Moving something up and to the left"),
    MotionClass(
        "move_down_right", "MoveDownRight", "move_down_right", "Moving something down and to the right"
    ),
    MotionClass("move_up_right", "MoveUpRight", "move_up_right", "Moving something up and to the right"),
    MotionClass("move_down_left", "MoveDownLeft", "move_down_left", "Moving something down and to the left"),
)

_DIRECTIONS: dict[str, tuple[float, float]] = {  # (dx, dy) unit vectors, y pointing down
    "move_left": (-1.0, 0.0),
    "move_right": (1.0, 0.0),
    "move_up": (0.0, -1.0),
    "move_down": (0.0, 1.0),
    "move_up_left": (-0.7071, -0.7071),
    "move_down_right": (0.7071, 0.7071),
    "move_up_right": (0.7071, -0.7071),
    "move_down_left": (-0.7071, 0.7071),
}


_MIN_SCALE, _MAX_SCALE = 0.5, 1.8  # object size range relative to its base radius (zoom cycle)
_FADE = 0.25  # last fraction of the zoom cycle over which (large) objects fade


@dataclass(frozen=True)
class _Pattern:
    """Smooth two-colour pattern p(u, v) in [0, 1]: a product of two sinusoids (checker-like) or one (stripes)."""

    colour_a: np.ndarray  # (3,)
    colour_b: np.ndarray  # (3,)
    freq: tuple[float, float]
    angle: float
    phase: tuple[float, float]
    checker: bool

    def colours(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """(…,) coordinates -> (…, 3) colours."""
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        a = u * ca + v * sa
        b = -u * sa + v * ca
        s = np.sin(2 * math.pi * self.freq[0] * a + self.phase[0])
        if self.checker:
            s = s * np.sin(2 * math.pi * self.freq[1] * b + self.phase[1])
        w = (0.5 + 0.5 * s)[..., None]
        return self.colour_a * (1 - w) + self.colour_b * w


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.05, 0.95, size=3).astype(np.float32)


def random_pattern(rng: np.random.Generator, freq_range: tuple[float, float]) -> _Pattern:
    return _Pattern(
        colour_a=_random_colour(rng),
        colour_b=_random_colour(rng),
        freq=(float(rng.uniform(*freq_range)), float(rng.uniform(*freq_range))),
        angle=float(rng.uniform(0, math.pi)),
        phase=(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 2 * math.pi))),
        checker=bool(rng.integers(0, 2)),
    )


@dataclass(frozen=True)
class _Object:
    pattern: _Pattern
    ellipse: bool
    radius: float  # pixels, before zoom
    aspect: float  # half-height / half-width
    centre: tuple[float, float]  # (x, y) at t = 0
    angle: float  # orientation at t = 0 (radians)
    zoom_phase: float  # position in the zoom cycle at t = 0, in [0, 1)


def render_clip(
    motion: Motion, num_frames: int, height: int, width: int, rng: np.random.Generator
) -> np.ndarray:
    """Render one clip: (num_frames, height, width, 3) uint8 RGB."""
    # Appearance first, with the same sequence of draws for every motion, so it cannot depend on the class.
    side = min(height, width)
    bg_pattern = random_pattern(rng, (1.0, 3.0))
    bg_freq = (
        int(rng.integers(2, 6)),
        int(rng.integers(1, 5)),
        int(rng.integers(2, 6)),
        int(rng.integers(1, 5)),
    )
    bg_contrast = float(rng.uniform(0.6, 1.0))
    num_objects = int(rng.integers(1, 4))
    objects = [
        _Object(
            pattern=random_pattern(rng, (0.6, 1.6)),
            ellipse=bool(rng.integers(0, 2)),
            radius=float(rng.uniform(0.14, 0.24) * side),
            aspect=float(rng.uniform(0.6, 1.0)),
            centre=(float(rng.uniform(0, width)), float(rng.uniform(0, height))),
            angle=float(rng.uniform(0, 2 * math.pi)),
            zoom_phase=float(rng.uniform(0, 1)),
        )
        for _ in range(num_objects)
    ]
    # Motion magnitudes: drawn for every class too (unused ones are simply ignored).
    speed = float(rng.uniform(1.5, 3.0)) * side / 72.0  # pixels per frame
    spin = float(rng.uniform(0.07, 0.14))  # radians per frame (4-8 degrees)
    zoom_rate = float(rng.uniform(0.03, 0.05))  # zoom cycles per frame
    heading = float(rng.uniform(0, 2 * math.pi))  # direction of speed_up / slow_down
    respawn = rng.uniform(0, 1, size=(num_objects, 64, 2))  # positions after each zoom re-spawn

    t = np.arange(num_frames, dtype=np.float64)
    shift = np.zeros((num_frames, 2))  # per-frame object displacement (x, y)
    bg_shift = np.zeros(num_frames)  # per-frame background x displacement
    spin_t = np.zeros(num_frames)
    zoom_t = np.zeros(num_frames)
    if motion in _DIRECTIONS:
        dx, dy = _DIRECTIONS[motion]
        shift = np.stack([dx * speed * t, dy * speed * t], axis=1)
    elif motion in ("speed_up", "slow_down"):
        # speed goes linearly 0.25x -> 2x (or back); displacement is its running sum
        progress = t / max(num_frames - 1, 1)
        v = 0.25 + 1.75 * (progress if motion == "speed_up" else 1 - progress)
        dist = np.concatenate([[0.0], np.cumsum(v[:-1])]) * speed
        shift = np.stack([math.cos(heading) * dist, math.sin(heading) * dist], axis=1)
    elif motion in ("pan_left", "pan_right"):
        bg_shift = (-1.0 if motion == "pan_left" else 1.0) * speed * t
    elif motion in ("rotate_cw", "rotate_ccw"):
        # with y pointing down, a growing angle turns clockwise on screen
        spin_t = (1.0 if motion == "rotate_cw" else -1.0) * spin * t
    elif motion in ("zoom_in", "zoom_out"):
        zoom_t = (1.0 if motion == "zoom_in" else -1.0) * zoom_rate * t
    else:
        raise ValueError(f"unknown motion {motion!r}")

    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for i in range(num_frames):
        # Background: integer spatial frequencies make it periodic, so a pan wraps seamlessly.
        bx = (xs - bg_shift[i]) / width
        by = ys / height
        g = np.sin(2 * math.pi * (bg_freq[0] * bx + bg_freq[1] * by) + bg_pattern.phase[0])
        g = g + np.sin(2 * math.pi * (bg_freq[2] * bx - bg_freq[3] * by) + bg_pattern.phase[1])
        w = (0.5 + 0.25 * bg_contrast * g)[..., None]
        img = bg_pattern.colour_a * (1 - w) + bg_pattern.colour_b * w
        for k, obj in enumerate(objects):
            cx, cy = obj.centre
            # Every object sits somewhere in a zoom cycle: its size and opacity follow the cycle position. The
            # zoom classes move along the cycle; every other class keeps its (uniformly drawn) position, so a
            # single frame's sizes and opacities have the same distribution whatever the class.
            frac = obj.zoom_phase
            if motion in ("zoom_in", "zoom_out"):
                # the cycle wraps: a grown, faded object is replaced by a small one elsewhere (or the reverse)
                phase = obj.zoom_phase + zoom_t[i]
                cycle = int(math.floor(phase))
                frac = phase - cycle
                if cycle != 0:
                    px, py = respawn[k, cycle % respawn.shape[1]]
                    cx, cy = px * width, py * height
            scale = _MIN_SCALE * (_MAX_SCALE / _MIN_SCALE) ** frac
            # large objects fade (never below 40 %) as they approach the wrap, which softens the pop of a
            # zoom cycle's end while every object stays visible
            opacity = 0.4 + 0.6 * min(1.0, (1.0 - frac) / _FADE)
            cx, cy = cx + shift[i, 0], cy + shift[i, 1]
            # Torus wrap: the displacement to the centre is taken modulo the frame size.
            ddx = (xs - cx + width / 2) % width - width / 2
            ddy = (ys - cy + height / 2) % height - height / 2
            ang = obj.angle + spin_t[i]
            ca, sa = math.cos(ang), math.sin(ang)
            r = obj.radius * scale
            u = (ca * ddx + sa * ddy) / r
            v = (-sa * ddx + ca * ddy) / (r * obj.aspect)
            dist = np.sqrt(u * u + v * v) if obj.ellipse else np.maximum(np.abs(u), np.abs(v))
            # a one-pixel soft edge keeps the codecs and frame differences free of aliasing
            alpha = opacity * np.clip((1.0 - dist) * r, 0.0, 1.0)[..., None]
            img = img * (1 - alpha) + obj.pattern.colours(u, v) * alpha
        frames[i] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return frames
