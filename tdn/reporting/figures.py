"""Figures drawn off-screen: one ``matplotlib.figure.Figure`` per picture, rendered to PNG bytes.

    new_figure(width, height) -> Figure on its own Agg canvas   (never pyplot: no global figure list, no
                                                                display needed, nothing leaks between calls
                                                                or threads of one process)
    fit_to_contents(fig, pad)  -> the figure resized around what is drawn: every axes keeps its size in
                                  inches, the margins become the measured extents of the tick labels,
                                  titles, legends and colour bars (nothing clipped, no empty border)
    save_figure(fig, dpi)     -> PNG bytes

Why measured margins and not ``tight_layout``: tight_layout shrinks the axes inside a fixed figure, so a long
class name ("ApplyEyeMakeup") squeezed the matrix or was cut at the edge in MLflow's artifact viewer ("anLeft");
here the data area has the size the picture was designed for and the figure grows around the labels.

The pictures themselves live beside this module: ``training_curves.py`` (curves.png), ``confusion.py``
(confusion.png, most_confused.csv) and ``per_class.py`` (per_class.png).
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of ``width`` x ``height`` inches drawn by Agg (no display, no pyplot state)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def fit_to_contents(fig: Figure, pad: float = 0.12) -> None:
    """Resize ``fig`` to the bounding box of everything drawn on it plus ``pad`` inches on each side.

    Every axes (colour bars included) keeps its width and height in inches and moves with the rest, so text
    placed relative to an axes (tick labels, titles, axes-anchored legends) keeps its place. Text placed in
    figure coordinates (``fig.suptitle``, ``fig.legend``) would not: the pictures here do not use it. One
    pass suffices: text sizes are in points, independent of the figure's size.
    """
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg canvas (new_figure)
    box = fig.get_tightbbox(renderer)  # inches, may reach outside the current figure
    old_w, old_h = fig.get_size_inches()
    new_w, new_h = box.width + 2 * pad, box.height + 2 * pad
    for ax in fig.axes:
        pos = ax.get_position()
        x0 = pos.x0 * old_w - box.x0 + pad
        y0 = pos.y0 * old_h - box.y0 + pad
        ax.set_position((x0 / new_w, y0 / new_h, pos.width * old_w / new_w, pos.height * old_h / new_h))
    fig.set_size_inches(new_w, new_h)


def save_figure(fig: Figure, dpi: float) -> bytes:
    """The figure as PNG bytes at ``dpi`` (pixels = inches x dpi)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels read from a PNG's IHDR chunk; ValueError when ``data`` is not a PNG."""
    if data[:8] != PNG_MAGIC or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
