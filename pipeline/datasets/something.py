"""Something-Something V1 and V2 annotations.

V1 (';'-separated, one video = a folder of JPEG frames ``<root>/<id>/00001.jpg...``)::

    something-something-v1-labels.csv        Holding something          (line order = class index)
    something-something-v1-train.csv         100218;Holding something
    something-something-v1-validation.csv    (same)
    something-something-v1-test.csv          100219                      (ids only)

V2 (JSON, videos ``<root>/<id>.webm``)::

    something-something-v2-labels.json       {"Approaching something with your camera": "0", ...}
    something-something-v2-train.json        [{"id": "78687", "label": "...", "template": "Holding [something]
                                               next to [something]", "placeholders": [...]}, ...]
    something-something-v2-validation.json   (same)
    something-something-v2-test.json         [{"id": "1420"}, ...]

The class of a V2 entry is its ``template`` with the brackets removed (the ``label`` field names the actual
objects). Missing split files are skipped (the test files are often absent); the labels and training files
are required.
"""

from __future__ import annotations

import json

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

_PARTS = (("train", "train"), ("validation", "val"), ("test", "test"))


def _optional(uri: str, required: bool) -> AnnotationFile | None:
    if not required and not storage.exists(uri):
        return None
    return read_annotation(uri)


def load_ssv1(cfg: DatasetConfig) -> DatasetIndex:
    ann = default_annotations(cfg)
    prefix = "something-something-v1"
    label_file = read_annotation(storage.join(ann, f"{prefix}-labels.csv"))
    classes = [line.strip() for line in label_file.lines if line.strip()]
    if len(set(classes)) != len(classes):
        raise AnnotationError(f"{label_file.uri}: duplicate class names")
    index_of = {c: i for i, c in enumerate(classes)}
    builder = IndexBuilder("ssv1", classes)
    builder.add_file(label_file)
    finder = VideoFinder(cfg.root, cfg.check_exists, True, cfg.allow_outside_root)
    for part, split in _PARTS:
        f = _optional(storage.join(ann, f"{prefix}-{part}.csv"), required=part == "train")
        if f is None:
            continue
        builder.add_file(f)
        for n, line in enumerate(f.lines, 1):
            if not line.strip():
                continue
            vid, sep, label_text = line.partition(";")
            vid, label_text = vid.strip(), label_text.strip()
            if not vid or (part != "test" and not label_text):
                raise f.error(n, f"expected '<id>;<label>', got {line!r}")
            if label_text and label_text not in index_of:
                raise f.error(n, f"label {label_text!r} is not in {label_file.name}")
            label = index_of[label_text] if label_text else -1
            builder.add(vid, finder.find(vid), finder.default_path(vid), label, split, f"{f.uri}:{n}")
    return builder.build()


def _json(f: AnnotationFile):
    try:
        return json.loads(f.text)
    except json.JSONDecodeError as e:
        raise f.error(e.lineno, f"invalid JSON: {e.msg}") from None


def load_ssv2(cfg: DatasetConfig) -> DatasetIndex:
    ann = default_annotations(cfg)
    prefix = "something-something-v2"
    label_file = read_annotation(storage.join(ann, f"{prefix}-labels.json"))
    mapping = _json(label_file)
    if not isinstance(mapping, dict) or not mapping:
        raise AnnotationError(f"{label_file.uri}: expected an object {{class name: index}}")
    try:
        pairs = sorted((int(v), k) for k, v in mapping.items())
    except (TypeError, ValueError):
        raise AnnotationError(f"{label_file.uri}: class indices must be integers") from None
    if [i for i, _ in pairs] != list(range(len(pairs))):
        raise AnnotationError(f"{label_file.uri}: class indices are not 0..{len(pairs) - 1}")
    classes = [k for _, k in pairs]
    index_of = {c: i for i, c in enumerate(classes)}
    builder = IndexBuilder("ssv2", classes)
    builder.add_file(label_file)
    finder = VideoFinder(cfg.root, cfg.check_exists, allow_outside_root=cfg.allow_outside_root)
    for part, split in _PARTS:
        f = _optional(storage.join(ann, f"{prefix}-{part}.json"), required=part == "train")
        if f is None:
            continue
        builder.add_file(f)
        entries = _json(f)
        if not isinstance(entries, list):
            raise AnnotationError(f"{f.uri}: expected a list of entries")
        for n, entry in enumerate(entries):
            where = f"{f.uri}: entry {n}"
            if not isinstance(entry, dict) or "id" not in entry:
                raise AnnotationError(f"{where}: expected an object with an 'id', got {entry!r:.80}")
            vid = str(entry["id"]).strip()
            label = -1
            if part != "test" or "template" in entry:
                if not isinstance(entry.get("template"), str):
                    raise AnnotationError(f"{where}: no 'template' to take the class from")
                name = entry["template"].replace("[", "").replace("]", "")
                if name not in index_of:
                    raise AnnotationError(f"{where}: class {name!r} is not in {label_file.name}")
                label = index_of[name]
            rel = f"{vid}.webm"
            builder.add(vid, finder.find(rel), finder.default_path(rel), label, split, where)
    return builder.build()
