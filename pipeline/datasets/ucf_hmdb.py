"""UCF101 and HMDB51: the official split files.

UCF101 (``ucfTrainTestlist/``, CRLF line ends)::

    classInd.txt        1 ApplyEyeMakeup
    trainlist01.txt     ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1      (1-based label)
    testlist01.txt      ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi        (no label: from the class folder)

HMDB51 (``testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt``, videos under ``<class>/``)::

    April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1           (1 train, 2 test, 0 unused; trailing space)

Classes: classInd order (UCF101); the sorted class names of the split files (HMDB51).
"""

from __future__ import annotations

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


def _check_split_number(cfg: DatasetConfig) -> None:
    if cfg.split_number not in (1, 2, 3):
        raise AnnotationError(f"{cfg.format}: split_number must be 1, 2 or 3, got {cfg.split_number}")


def _video_id(rel: str) -> str:
    base = posixpath.basename(rel)
    return base.rsplit(".", 1)[0] if "." in base else base


def load_ucf101(cfg: DatasetConfig) -> DatasetIndex:
    _check_split_number(cfg)
    ann = default_annotations(cfg, "ucfTrainTestlist")
    class_file = read_annotation(storage.join(ann, "classInd.txt"))
    classes: list[str] = []
    for n, line in enumerate(class_file.lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise class_file.error(n, f"expected '<index> <ClassName>', got {line!r}")
        if int(parts[0]) != len(classes) + 1:
            raise class_file.error(n, f"class index {parts[0]} out of order (expected {len(classes) + 1})")
        classes.append(parts[1])
    if not classes:
        raise AnnotationError(f"{class_file.uri}: no classes")
    by_lower = {c.lower(): i for i, c in enumerate(classes)}

    builder = IndexBuilder("ucf101", classes)
    builder.add_file(class_file)
    finder = VideoFinder(cfg.root, cfg.check_exists, allow_outside_root=cfg.allow_outside_root)
    for split, name in (
        ("train", f"trainlist{cfg.split_number:02d}.txt"),
        ("test", f"testlist{cfg.split_number:02d}.txt"),
    ):
        f = read_annotation(storage.join(ann, name))
        builder.add_file(f)
        for n, line in enumerate(f.lines, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) > 2 or "/" not in parts[0] or (len(parts) == 2 and not parts[1].isdigit()):
                raise f.error(n, f"expected '<Class>/<video> [<1-based label>]', got {line!r}")
            rel = parts[0]
            folder = rel.split("/", 1)[0]
            # the label comes from the class folder, matched ignoring case: the test lists carry no label and
            # file names do not always match the folder (HandstandPushups/v_HandStandPushups_g01_c01.avi)
            if folder.lower() not in by_lower:
                raise f.error(n, f"class folder {folder!r} is not in {class_file.name}")
            label = by_lower[folder.lower()]
            if len(parts) == 2 and int(parts[1]) - 1 != label:
                raise f.error(
                    n,
                    f"label {parts[1]} does not match class folder {folder!r} "
                    f"({label + 1} in {class_file.name})",
                )
            builder.add(
                _video_id(rel), finder.find(rel), finder.default_path(rel), label, split, f"{f.uri}:{n}"
            )
    return builder.build()


def load_hmdb51(cfg: DatasetConfig) -> DatasetIndex:
    _check_split_number(cfg)
    ann = default_annotations(cfg, "testTrainMulti_7030_splits")
    suffix = f"_test_split{cfg.split_number}.txt"
    split_files = sorted(u for u in storage.list_files(ann, suffix) if posixpath.basename(u).endswith(suffix))
    if not split_files:
        raise AnnotationError(f"{ann}: no *{suffix} files")
    files = [read_annotation(u) for u in split_files]
    classes = sorted(f.name[: -len(suffix)] for f in files)
    builder = IndexBuilder("hmdb51", classes)
    finder = VideoFinder(cfg.root, cfg.check_exists, allow_outside_root=cfg.allow_outside_root)
    for f in sorted(files, key=lambda f: f.name):
        builder.add_file(f)
        cls = f.name[: -len(suffix)]
        label = classes.index(cls)
        for n, line in enumerate(f.lines, 1):
            parts = line.split()  # the official lines end with a space
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise f.error(n, f"expected '<video>.avi 0|1|2', got {line!r}")
            if parts[1] == "0":
                continue  # not used by this split
            rel = f"{cls}/{parts[0]}"
            split = "train" if parts[1] == "1" else "test"
            builder.add(
                _video_id(rel), finder.find(rel), finder.default_path(rel), label, split, f"{f.uri}:{n}"
            )
    return builder.build()
