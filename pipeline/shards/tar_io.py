"""Shard tars with reproducible bytes, and the sha256 of a file.

write_tar(path, samples)  samples: ``contract.encode_sample`` dicts -> <key>.json, .frames, .cls members,
                          fixed member metadata (mtime 0, uid/gid 0, mode 0644, USTAR): same samples,
                          same bytes
sha256_file(path)         hex digest, read in 1 MiB chunks
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterable


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def write_tar(path: str, samples: Iterable[dict[str, bytes | str]]) -> int:
    """Write samples (``encode_sample`` dicts) to a WebDataset tar with reproducible bytes; returns count."""
    count = 0
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            key = sample["__key__"]
            if not isinstance(key, str):
                raise TypeError(f"sample key must be a str (encode_sample), got {key!r}")
            for ext in ("json", "frames", "cls"):
                data = sample[ext]
                _add_member(tar, f"{key}.{ext}", data if isinstance(data, bytes) else data.encode("utf-8"))
            count += 1
    return count


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
