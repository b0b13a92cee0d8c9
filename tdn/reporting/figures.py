"""Figures drawn off-screen: one ``matplotlib.figure.Figure`` per picture, rendered to PNG bytes.

    new_figure(width, height) -> Figure on its own Agg canvas   (never pyplot: no global figure list, no
                                                                display needed, nothing leaks between calls
                                                                or threads of one process)
    save_figure(fig, dpi)     -> PNG bytes

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
