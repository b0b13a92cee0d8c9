"""A Grad-CAM strip: a clip's T centre frames side by side with the class-activation map over each.

    cam_strip_png(frames (T, S, S, 3) uint8, cam (T, S, S) in [0, 1], title, labels) -> PNG bytes

Each panel is the crop the model saw (its centre frame of the segment's window), the map drawn over it in
the ``jet`` colours at ``ALPHA`` (blue 0 -> red 1, the paper's Figures 4-7 palette), its label (the source
frame index) under it; the title (class, probability, video) on a text row above the panels. 1.4 in per
panel at 100 dpi: 140 px, about 2.5x a 56 px crop, 0.6x a 224 px one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tdn.reporting.figures import fit_to_contents, new_figure, save_figure

PANEL_IN = 1.4  # panel side, inches
GAP_IN = 0.06  # between panels
ALPHA = 0.45  # opacity of the heat map over the frame
DPI = 100


def cam_strip_png(frames: np.ndarray, cam: np.ndarray, title: str, labels: Sequence[str] = ()) -> bytes:
    """PNG bytes of the strip (see the module docstring)."""
    t = cam.shape[0]
    if frames.shape[0] != t or frames.shape[1:3] != cam.shape[1:]:
        raise ValueError(f"frames {frames.shape} and cam {cam.shape} must be (T, S, S, 3) and (T, S, S)")
    width = t * PANEL_IN + (t - 1) * GAP_IN
    title_in = 0.3
    fig = new_figure(width, PANEL_IN + title_in)
    height = PANEL_IN + title_in
    head = fig.add_axes((0.0, PANEL_IN / height, 1.0, title_in / height))
    head.axis("off")
    head.text(0.0, 0.2, title, fontsize=10, ha="left", va="bottom")
    for i in range(t):
        ax = fig.add_axes(((i * (PANEL_IN + GAP_IN)) / width, 0.0, PANEL_IN / width, PANEL_IN / height))
        ax.imshow(frames[i], interpolation="nearest")
        ax.imshow(cam[i], cmap="jet", alpha=ALPHA, vmin=0.0, vmax=1.0, interpolation="bilinear")
        ax.set_xticks([])
        ax.set_yticks([])
        if i < len(labels):
            ax.set_xlabel(labels[i], fontsize=8)
    fit_to_contents(fig)
    return save_figure(fig, DPI)
