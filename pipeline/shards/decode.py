"""Decoding exactly the frames a sample set needs: ``open_source`` picks the decoder for a source.

    video file (local or s3://) --open_source--> VideoFile (video_file.py: PyAV, probe then one decode pass)
    folder of JPEG frames (SSv1) --open_source--> FrameFolder (frame_folder.py: PIL, only the wanted files)

Both are context managers with ``probe() -> VideoInfo``, ``frames(wanted)`` and ``jpegs(wanted)``, taking and
giving the types of decode_types.py; frames are sized, rotated and JPEG-encoded by frame_convert.py. A frame's
index is its ordinal in the source (presentation order for a video, natural name order for a folder).
"""

from __future__ import annotations

from pipeline import storage
from pipeline.shards.frame_folder import FrameFolder
from pipeline.shards.video_file import VideoFile


def open_source(
    uri: str, threads: int = 1, min_decoded_fraction: float = 0.5, skip_unneeded: bool = True
) -> VideoFile | FrameFolder:
    """A ``VideoFile`` or, for a directory, a ``FrameFolder``; both are context managers with
    ``probe()`` and ``frames()``."""
    if storage.is_dir(uri):
        return FrameFolder(uri)
    return VideoFile(
        uri, threads=threads, min_decoded_fraction=min_decoded_fraction, skip_unneeded=skip_unneeded
    )
