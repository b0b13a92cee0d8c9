"""Dataset annotations in their official formats -> ``DatasetIndex`` of ``VideoRecord``s.

    index = load_dataset(DatasetConfig(format="ucf101", root="s3://bucket/UCF-101", split_number=1))
    index.splits["train"][0]   # VideoRecord(video_id='v_ApplyEyeMakeup_g08_c01', path=..., label=0, split='train')
    index.missing["test"]      # VideoRecords listed but not found on storage (reported, never dropped)

Formats (one module each): UCF101 and HMDB51 (``ucf_hmdb``), Kinetics-400/600/700 CSV (``kinetics``),
Something-Something V1/V2 (``something``), a generic ``path,label`` CSV (``generic``), a plain folder of videos
(``folder``: sub-folders = classes, flat = unlabelled). Split names are mapped
onto "train" / "val" / "test"; UCF101 and HMDB51 have "train" and "test". Paths may be local or s3://
(pipeline/storage.py); existence is checked against one listing of the root, not one request per video.
Malformed annotation lines raise ``AnnotationError`` naming the file and line.
"""

from __future__ import annotations

from pipeline import storage
from pipeline.datasets.common import (
    AnnotationError,
    DatasetConfig,
    DatasetFormat,
    DatasetIndex,
    VideoRecord,
)
from pipeline.datasets.folder import load_folder
from pipeline.datasets.generic import load_csv
from pipeline.datasets.kinetics import load_kinetics
from pipeline.datasets.something import load_ssv1, load_ssv2
from pipeline.datasets.ucf_hmdb import load_hmdb51, load_ucf101

__all__ = [
    "AnnotationError",
    "DatasetConfig",
    "DatasetFormat",
    "DatasetIndex",
    "VideoRecord",
    "load_dataset",
]


def load_dataset(cfg: DatasetConfig) -> DatasetIndex:
    """Parse the annotations of ``cfg.format`` and locate the videos under ``cfg.root``.

    A root that does not exist, or storage that cannot be reached, is an ``AnnotationError`` naming the root."""
    try:
        root_is_dir = storage.is_dir(cfg.root)
    except OSError as exc:  # e.g. an S3 endpoint that does not answer
        raise AnnotationError(f"dataset root {cfg.root}: cannot be read: {str(exc).splitlines()[0]}") from exc
    if not root_is_dir:
        raise AnnotationError(f"dataset root {cfg.root} does not exist or is not a folder")
    if cfg.format == "ucf101":
        return load_ucf101(cfg)
    if cfg.format == "hmdb51":
        return load_hmdb51(cfg)
    if cfg.format == "kinetics":
        return load_kinetics(cfg)
    if cfg.format == "ssv1":
        return load_ssv1(cfg)
    if cfg.format == "ssv2":
        return load_ssv2(cfg)
    if cfg.format == "csv":
        return load_csv(cfg)
    if cfg.format == "folder":
        return load_folder(cfg)
    raise ValueError(
        f"unknown dataset format {cfg.format!r} (ucf101, hmdb51, kinetics, ssv1, ssv2, csv, folder)"
    )
