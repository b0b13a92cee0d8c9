"""SOURCE arguments -> the videos to predict, in a stable order, each once.

    file            a video (any extension: named on purpose), or a list when it ends in .txt / .csv
    folder          every video file below it (recursive), sorted
    glob            ``clips/*.mp4``, ``data/**/*.webm`` (local) or ``s3://b/new/*.mp4`` (one listing of the
                    prefix before the first wildcard)
    s3://prefix     every video object under it (one listing), or the object itself
    list.txt        one path per line (blank lines and ``#`` comments skipped)
    list.csv        the ``path`` column (header) or the first column; ``label`` and other columns ignored
                    (the shard job's CSV, README "Your own videos", is a valid list)

Relative paths in a list are relative to the list's folder. A SOURCE that does not exist is an InputError
(one line, exit 2); a listed video that is missing is predicted as an error row (stage ``missing``).
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import io
import os
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline import storage
from pipeline.errors import InputError

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp", ".ogv"}
)
LIST_EXTENSIONS = (".txt", ".csv")
_WILDCARDS = "*?["


@dataclass(frozen=True)
class VideoInput:
    """One video to predict: ``video`` as the output names it (the path or URI as found) and its location."""

    video: str
    uri: str


def is_video_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def list_sources(sources: Sequence[str]) -> list[VideoInput]:
    """Every video the SOURCE arguments name, first occurrence first (InputError when none is found)."""
    if not sources:
        raise InputError(
            "no SOURCE given: name video files, folders, globs, s3:// prefixes or a .txt/.csv list"
        )
    seen: dict[str, VideoInput] = {}
    for source in sources:
        found = list(_expand(source))
        if not found:
            raise InputError(
                f"{source}: no video files there (extensions: {', '.join(sorted(VIDEO_EXTENSIONS))})"
            )
        for uri in found:
            seen.setdefault(uri, VideoInput(uri, uri))
    return list(seen.values())


def _expand(source: str) -> Iterable[str]:
    if any(c in source for c in _WILDCARDS):
        yield from _glob(source)
        return
    try:
        is_file, is_dir = storage.is_file(source), storage.is_dir(source)
    except OSError as exc:
        raise InputError(f"{source}: cannot be read ({str(exc).splitlines()[0]})") from exc
    if is_file:
        if source.lower().endswith(LIST_EXTENSIONS):
            yield from read_list(source)
        else:
            yield source
    elif is_dir:
        found = sorted(u for u in storage.list_files(source, recursive=True) if is_video_name(u))
        if storage.is_s3(source):
            yield from found
        else:  # named as the user named the folder (clips/a.mp4, not /home/.../clips/a.mp4)
            base = os.path.abspath(source)
            yield from (os.path.join(source, os.path.relpath(u, base)) for u in found)
    else:
        raise InputError(f"{source}: no such file, folder or s3:// prefix")


def _glob(pattern: str) -> Iterable[str]:
    if not storage.is_s3(pattern):
        return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    head = pattern[: min(pattern.index(c) for c in _WILDCARDS if c in pattern)]
    prefix = head[: head.rfind("/") + 1]
    listed = storage.list_files(prefix.rstrip("/"), recursive=True) if prefix else []
    return sorted(u for u in listed if fnmatch.fnmatchcase(u, pattern))


def read_list(uri: str) -> list[str]:
    """The paths a .txt (one per line) or .csv (``path`` column, else the first) list names, made absolute
    against the list's folder."""
    text = storage.read_text(uri).lstrip("\ufeff")
    if uri.lower().endswith(".csv"):
        rows = [r for r in csv.reader(io.StringIO(text)) if r and any(v.strip() for v in r)]
        column = 0
        if rows and "path" in [v.strip().lower() for v in rows[0]]:
            column = [v.strip().lower() for v in rows[0]].index("path")
            rows = rows[1:]
        paths = [r[column].strip() for r in rows if len(r) > column and r[column].strip()]
    else:
        paths = [
            line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
        ]
    if storage.is_s3(uri):
        folder = posixpath.dirname(uri)
        return [p if storage.is_s3(p) or p.startswith("/") else f"{folder}/{p}" for p in paths]
    folder = os.path.dirname(os.path.abspath(uri))
    return [
        p if storage.is_s3(p) or os.path.isabs(p) else os.path.normpath(os.path.join(folder, p))
        for p in paths
    ]
