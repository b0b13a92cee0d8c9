"""A plain folder of videos, no annotation file: the layout says what is labelled.

    root/<class>/<video>          labelled: one sub-folder per class (classes sorted by name)
    root/<video>                  unlabelled: label -1 (videos to score or predict)
    root/{train,val,test}/...     either of the above per split folder (``validation`` is val)

Without split folders the videos form one split: ``train`` when labelled, ``test`` when not. Deeper folders
under a class folder belong to that class; videos both directly in a folder and in its sub-folders are an
AnnotationError naming one of each (a labelled and an unlabelled video side by side is ambiguous). The video
id is its path relative to the root. ``format: folder``, or ``format: csv`` on a root without any
.csv file (generic.py), reads this layout.
"""

from __future__ import annotations

import posixpath

from pipeline import storage
from pipeline.datasets.common import AnnotationError, DatasetConfig, DatasetIndex, IndexBuilder
from pipeline.datasets.kinetics import _SPLITS

VIDEO_SUFFIXES = (
    ".mp4",
    ".m4v",
    ".mov",
    ".avi",
    ".mkv",
    ".webm",
    ".mpg",
    ".mpeg",
    ".ts",
    ".flv",
    ".wmv",
    ".3gp",
)


def _relative(uri: str, folder: str) -> str:
    prefix = folder.rstrip("/\\")
    rel = uri[len(prefix) :].lstrip("/\\") if uri.startswith(prefix) else uri
    return rel.replace("\\", "/")


def _videos(folder: str) -> list[str]:
    return [u for u in storage.list_files(folder, recursive=True) if u.lower().endswith(VIDEO_SUFFIXES)]


def load_folder(cfg: DatasetConfig) -> DatasetIndex:
    """The DatasetIndex of a plain folder (module docstring)."""
    root = cfg.root
    split_dirs = {_SPLITS.get(posixpath.basename(d.rstrip("/")).lower()): d for d in storage.list_dirs(root)}
    split_dirs.pop(None, None)
    folders: dict[str, str] = {s: d for s, d in split_dirs.items() if s} or {"": root}
    listed = {split: [(_relative(u, d), u) for u in _videos(d)] for split, d in folders.items()}
    if not any(listed.values()):
        raise AnnotationError(f"{cfg.root}: no .csv files and no video files ({', '.join(VIDEO_SUFFIXES)})")
    labelled_any = False
    for split, videos in listed.items():
        flat = [rel for rel, _ in videos if "/" not in rel]
        nested = [rel for rel, _ in videos if "/" in rel]
        if flat and nested:
            raise AnnotationError(
                f"{folders[split]}: videos both directly in the folder ({flat[0]}) and in class sub-folders "
                f"({nested[0]}): put every video in a class folder (labelled) or none (unlabelled)"
            )
        labelled_any |= bool(nested)
    classes = sorted({rel.split("/", 1)[0] for videos in listed.values() for rel, _ in videos if "/" in rel})
    index_of = {c: i for i, c in enumerate(classes)}
    builder = IndexBuilder("folder", classes)
    for split, videos in listed.items():
        name = split or ("train" if labelled_any else "test")
        for rel, uri in videos:
            label = index_of[rel.split("/", 1)[0]] if "/" in rel else -1
            builder.add(_relative(uri, root), uri, uri, label, name, uri)
    return builder.build()
