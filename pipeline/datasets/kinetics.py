"""Kinetics-400/600/700 CSV annotations.

    label,youtube_id,time_start,time_end,split[,is_cc]
    "passing American football (in game)",-0V4a8xXV5M,10,20,train,0

The annotation location is a folder of such CSVs (train.csv, validate.csv, test.csv; the test file may lack
the label column) or one CSV file. A row's split comes from its ``split`` column (``validate``/``val`` ->
"val"), else from the file name. Videos are ``<youtube_id>_<start:06d>_<end:06d>.<ext>``, found anywhere
under the root (flat, under label folders or under split folders). Classes: sorted labels of the training
rows (of all labelled rows when there is no training file), the order the released models use.
"""

from __future__ import annotations

import csv
import posixpath

from pipeline import storage
from pipeline.datasets.common import (
    AnnotationError,
    AnnotationFile,
    DatasetConfig,
    DatasetIndex,
    IndexBuilder,
    VideoFinder,
    default_annotations,
    read_annotation,
)

_SPLITS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "validate": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def split_from_name(name: str) -> str | None:
    """'kinetics_400_validate.csv' -> 'val'; None when the name does not say."""
    stem = posixpath.basename(name).rsplit(".", 1)[0].lower().replace("-", "_")
    for part in reversed(stem.split("_")):
        if part in _SPLITS:
            return _SPLITS[part]
    return None


def clip_name(youtube_id: str, start: str, end: str) -> str:
    """The file stem of a Kinetics clip: ``<youtube_id>_<start:06d>_<end:06d>`` (times in whole seconds)."""
    return f"{youtube_id}_{int(float(start)):06d}_{int(float(end)):06d}"


def _rows(f: AnnotationFile) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    reader = csv.reader(f.lines)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise AnnotationError(f"{f.uri}: empty file") from None
    for need in ("youtube_id", "time_start", "time_end"):
        if need not in header:
            raise f.error(1, f"header {header} lacks {need!r}")
    rows = []
    for n, values in enumerate(reader, 2):
        if not values or not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise f.error(n, f"expected {len(header)} fields ({','.join(header)}), got {len(values)}")
        rows.append((n, dict(zip(header, (v.strip() for v in values)))))
    return header, rows


def load_kinetics(cfg: DatasetConfig) -> DatasetIndex:
    ann = default_annotations(cfg)
    if ann.lower().endswith(".csv"):
        uris = [ann]
    else:
        uris = [u for u in storage.list_files(ann, ".csv") if split_from_name(u) is not None]
        if not uris:
            raise AnnotationError(f"{ann}: no train/validate/test CSV files")
    files = [read_annotation(u) for u in uris]
    parsed = []
    for f in files:
        _, rows = _rows(f)
        default_split = split_from_name(f.name)
        for n, row in rows:
            split_text = row.get("split", "").lower()
            split = _SPLITS.get(split_text) if split_text else default_split
            if split is None:
                raise f.error(n, f"unknown split {row.get('split')!r} (and the file name names none)")
            for key in ("time_start", "time_end"):
                try:
                    float(row[key])
                except ValueError:
                    raise f.error(n, f"{key} is not a number: {row[key]!r}") from None
            if not row["youtube_id"]:
                raise f.error(n, "empty youtube_id")
            parsed.append((f, n, row, split))

    labelled = [row["label"] for _, _, row, split in parsed if row.get("label")]
    train_labels = [row["label"] for _, _, row, split in parsed if row.get("label") and split == "train"]
    classes = sorted(set(train_labels or labelled))
    index_of = {c: i for i, c in enumerate(classes)}
    builder = IndexBuilder("kinetics", classes)
    for f in files:
        builder.add_file(f)
    finder = VideoFinder(cfg.root, cfg.check_exists, allow_outside_root=cfg.allow_outside_root)
    for f, n, row, split in parsed:
        label_text = row.get("label", "")
        if label_text and label_text not in index_of:
            raise f.error(n, f"label {label_text!r} is not a training class")
        label = index_of[label_text] if label_text else -1
        stem = clip_name(row["youtube_id"], row["time_start"], row["time_end"])
        found = finder.find_by_name(stem) if cfg.check_exists else finder.default_path(stem + ".mp4")
        builder.add(stem, found, finder.default_path(stem + ".mp4"), label, split, f"{f.uri}:{n}")
    return builder.build()
