"""A generic CSV for users' own data.

    path,label[,split]          (the header is optional; it is recognised by a first field named 'path')
    videos/cat/clip 1.mp4,cat
    "s3://bucket/a,b.mp4",3

Paths are relative to the dataset root, absolute, or s3:// URIs. A label is a class name or a 0-based class
index; an empty label means unlabelled (-1). The annotation location is one CSV or a folder of CSVs. A row's
split is its ``split`` field, else its file's name (train.csv, val.csv, validation.csv, test.csv), else
"train". Classes: ``classes.txt`` beside the CSVs (one name per line) when present; otherwise the sorted label
names, or ``0..max`` when every label is an index. A root with no .csv file (and no ``annotations`` given) is
read as a plain folder of videos (folder.py: sub-folders = classes, flat = unlabelled).
"""

from __future__ import annotations

import csv
import os
import posixpath

from pipeline import storage
from pipeline.datasets.common import (
    AnnotationError,
    DatasetConfig,
    DatasetIndex,
    IndexBuilder,
    VideoFinder,
    default_annotations,
    read_annotation,
)
from pipeline.datasets.folder import load_folder
from pipeline.datasets.kinetics import _SPLITS, split_from_name


def _is_index(text: str) -> bool:
    return text.isdigit()


def load_csv(cfg: DatasetConfig) -> DatasetIndex:
    ann = default_annotations(cfg)
    if ann.lower().endswith(".csv"):
        uris, folder = (
            [ann],
            posixpath.dirname(ann) if storage.is_s3(ann) else os.path.dirname(os.path.abspath(ann)),
        )
    else:
        uris, folder = storage.list_files(ann, ".csv"), ann
        if not uris and not cfg.annotations:
            return load_folder(cfg)  # a plain folder of videos: sub-folders = classes, flat = unlabelled
        if not uris:
            raise AnnotationError(f"{ann}: no .csv files (see README 'Your own videos' for the CSV format)")
    files = [read_annotation(u) for u in uris]

    rows = []  # (file, line, path, label text, split)
    for f in files:
        lines = list(enumerate(csv.reader(f.lines), 1))
        columns = ["path", "label", "split"]
        if lines and lines[0][1] and lines[0][1][0].strip().lower() == "path":
            columns = [c.strip().lower() for c in lines[0][1]]
            if "label" not in columns:
                raise f.error(1, f"header {columns} lacks 'label'")
            lines = lines[1:]
        for n, values in lines:
            if not values or not any(v.strip() for v in values):
                continue
            if len(values) not in (2, 3) or len(values) > len(columns):
                raise f.error(n, f"expected 'path,label[,split]', got {len(values)} fields")
            row = dict(zip(columns, (v.strip() for v in values)))
            if not row.get("path"):
                raise f.error(n, "empty path")
            split_text = row.get("split", "").lower()
            split = _SPLITS.get(split_text) if split_text else (split_from_name(f.name) or "train")
            if split is None:
                raise f.error(n, f"unknown split {row['split']!r} (train, val or test)")
            rows.append((f, n, row["path"], row.get("label", ""), split))

    classes_uri = storage.join(folder, "classes.txt")
    builder_files = list(files)
    if storage.exists(classes_uri):
        class_file = read_annotation(classes_uri)
        classes = [line.strip() for line in class_file.lines if line.strip()]
        builder_files.append(class_file)
    else:
        labels = {r[3] for r in rows if r[3]}
        if labels and all(_is_index(label) for label in labels):
            classes = [str(i) for i in range(max(int(label) for label in labels) + 1)]
        elif any(_is_index(label) for label in labels):
            f, n = next((r[0], r[1]) for r in rows if _is_index(r[3]))
            raise f.error(n, "labels mix class names and indices: add a classes.txt naming the classes")
        else:
            classes = sorted(labels)
    index_of = {c: i for i, c in enumerate(classes)}

    builder = IndexBuilder("csv", classes)
    for f in builder_files:
        builder.add_file(f)
    finder = VideoFinder(cfg.root, cfg.check_exists, allow_outside_root=cfg.allow_outside_root)
    for f, n, path, label_text, split in rows:
        if not label_text:
            label = -1
        elif label_text in index_of:
            label = index_of[label_text]
        elif _is_index(label_text) and int(label_text) < len(classes):
            label = int(label_text)
        else:
            raise f.error(n, f"label {label_text!r} is not a class (classes: {len(classes)})")
        if storage.is_s3(path) or os.path.isabs(path):
            found = path if not cfg.check_exists or storage.exists(path) else None
            listed = path
        else:
            found, listed = finder.find(path), finder.default_path(path)
        builder.add(path, found, listed, label, split, f"{f.uri}:{n}")
    return builder.build()
