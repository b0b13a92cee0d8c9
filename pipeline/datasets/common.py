"""Records, config and shared helpers of the dataset parsers (one module per annotation format)."""

from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import dataclass, field
from typing import Literal

from pipeline import storage
from pipeline.errors import InputError

DatasetFormat = Literal["ucf101", "hmdb51", "kinetics", "ssv1", "ssv2", "csv", "folder"]


@dataclass(frozen=True)
class VideoRecord:
    video_id: str  # unique within the dataset; any characters (dots, spaces, '#', unicode, leading '-')
    path: str  # local path or s3:// URI of a video file, or of a JPEG frame folder (SSv1)
    label: int  # class index, -1 when the split has no labels (test lists)
    split: str  # "train" | "val" | "test" (dataset-specific names mapped onto these)


@dataclass(frozen=True)
class DatasetIndex:
    name: str  # "ucf101" | "hmdb51" | "kinetics" | "ssv1" | "ssv2" | "csv" | "folder"
    classes: list[str]  # index -> class name
    splits: dict[str, list[VideoRecord]]  # found videos only (all listed ones when check_exists is off)
    annotation_checksums: dict[str, str]  # annotation file name -> sha256
    missing: dict[str, list[VideoRecord]] = field(
        default_factory=dict
    )  # split -> listed, not found on storage


@dataclass
class DatasetConfig:
    format: DatasetFormat = "ucf101"  # which dataset layout the annotations follow
    root: str = "data/ucf101"  # folder (local or s3://) holding the videos / frame folders
    # annotation folder or file; "" = the format's usual place: <root>/ucfTrainTestlist (UCF101),
    # <root>/testTrainMulti_7030_splits (HMDB51), <root> (Kinetics CSVs, Something-Something files)
    annotations: str = ""
    split_number: int = 1  # 1..3, the official split of UCF101 / HMDB51
    check_exists: bool = True  # list the storage once; listed videos not found go to DatasetIndex.missing
    # False: a relative annotation path that climbs out of ``root`` ("../x.mp4") is an AnnotationError
    allow_outside_root: bool = False


class AnnotationError(InputError):
    """A malformed or inconsistent annotation file; the message names the file and line."""


@dataclass(frozen=True)
class AnnotationFile:
    uri: str
    name: str  # base name, the key of DatasetIndex.annotation_checksums
    sha256: str
    lines: list[str]  # without terminators; CRLF and a UTF-8 BOM removed

    def error(self, line_no: int, message: str) -> AnnotationError:
        return AnnotationError(f"{self.uri}:{line_no}: {message}")

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def read_annotation(uri: str) -> AnnotationFile:
    if not storage.exists(uri):
        raise AnnotationError(f"{uri}: annotation file not found")
    data = storage.read_bytes(uri)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{uri}: not UTF-8 text ({e})") from None
    return AnnotationFile(
        uri,
        posixpath.basename(str(uri).replace(os.sep, "/")),
        hashlib.sha256(data).hexdigest(),
        text.splitlines(),
    )


def _root_prefix(root: str) -> str:
    root = str(root)
    return root.rstrip("/") + "/" if storage.is_s3(root) else os.path.abspath(root).rstrip(os.sep) + os.sep


def _strip_ext(rel: str) -> str:
    base = posixpath.basename(rel)
    return rel[: len(rel) - len(base)] + (base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base)


class VideoFinder:
    """Resolves paths listed in annotations against one listing of the storage under ``root``.

    Lookups try the exact relative path, then the same path ignoring case (UCF101's ``HandstandPushups/
    v_HandStandPushups_*``, data copied through case-insensitive filesystems), then the path with any
    extension (videos re-encoded to another container). With ``check_exists`` off nothing is listed and every
    path is taken as written.
    """

    def __init__(
        self, root: str, check_exists: bool, folders: bool = False, allow_outside_root: bool = False
    ) -> None:
        self.root = str(root)
        self.check_exists = check_exists
        self.allow_outside_root = allow_outside_root
        self._exact: dict[str, str] = {}
        self._lower: dict[str, str] = {}
        self._stem: dict[str, str] = {}
        self._name_stem: dict[str, str] = {}
        if not check_exists:
            return
        if folders:  # frame folders (SSv1): list directories, never the millions of JPEGs under them
            uris = storage.list_dirs(self.root)
        else:
            uris = storage.list_files(self.root, recursive=True)
        prefix = _root_prefix(self.root)
        for uri in uris:  # sorted, so the first match of an ambiguous lookup is stable
            if not uri.startswith(prefix):
                continue
            rel = uri[len(prefix) :].replace(os.sep, "/")
            self._exact[rel] = uri
            self._lower.setdefault(rel.lower(), uri)
            self._stem.setdefault(_strip_ext(rel).lower(), uri)
            self._name_stem.setdefault(_strip_ext(posixpath.basename(rel)).lower(), uri)

    def confined(self, rel: str) -> str:
        """``rel`` ('/'-separated), refused when it climbs out of the root (unless ``allow_outside_root``)."""
        norm = posixpath.normpath(rel.replace("\\", "/").lstrip("/"))
        if not self.allow_outside_root and (norm == ".." or norm.startswith("../")):
            raise AnnotationError(
                f"annotation path {rel!r} leaves the dataset root {self.root} "
                "(set dataset.allow_outside_root to allow it)"
            )
        return rel

    def default_path(self, rel: str) -> str:
        return storage.join(self.root, *self.confined(rel).split("/"))

    def find(self, rel: str) -> str | None:
        """URI of the listed relative path ``rel`` ('/'-separated), None when not on storage."""
        rel = self.confined(rel).replace("\\", "/").lstrip("/")
        if not self.check_exists:
            return self.default_path(rel)
        hit = self._exact.get(rel) or self._lower.get(rel.lower())
        return hit or self._stem.get(_strip_ext(rel).lower())

    def find_by_name(self, stem: str) -> str | None:
        """URI of a file whose base name without extension is ``stem``, in any sub-folder (Kinetics keeps
        videos flat, under label folders or under split folders)."""
        return self._name_stem.get(self.confined(stem).lower())


class IndexBuilder:
    """Collects records per split; videos not found go to ``missing``; duplicate ids are checked."""

    def __init__(self, name: str, classes: list[str]):
        self.name = name
        self.classes = classes
        self.splits: dict[str, list[VideoRecord]] = {}
        self.missing: dict[str, list[VideoRecord]] = {}
        self.checksums: dict[str, str] = {}
        self._seen: dict[str, tuple[int, str, str]] = {}  # video_id -> (label, split, where)

    def add_file(self, f: AnnotationFile) -> None:
        self.checksums[f.name] = f.sha256

    def add(self, video_id: str, found: str | None, listed: str, label: int, split: str, where: str) -> None:
        if not -1 <= label < len(self.classes):
            raise AnnotationError(f"{where}: label {label} outside 0..{len(self.classes) - 1}")
        prev = self._seen.get(video_id)
        if prev is not None:
            if prev[:2] == (label, split):
                return  # the same entry listed twice (some official CSVs repeat rows): keep one
            raise AnnotationError(
                f"{where}: video {video_id!r} already listed at {prev[2]} with another label or split"
            )
        self._seen[video_id] = (label, split, where)
        self.splits.setdefault(split, [])
        self.missing.setdefault(split, [])
        if found is None:
            self.missing[split].append(VideoRecord(video_id, listed, label, split))
        else:
            self.splits[split].append(VideoRecord(video_id, found, label, split))

    def build(self) -> DatasetIndex:
        return DatasetIndex(
            self.name, list(self.classes), self.splits, dict(sorted(self.checksums.items())), self.missing
        )


def default_annotations(cfg: DatasetConfig, sub: str = "") -> str:
    if cfg.annotations:
        return cfg.annotations
    return storage.join(cfg.root, sub) if sub else cfg.root
