"""Local paths and ``s3://`` URIs behind one small API (pyarrow.fs underneath).

S3 is configured the standard way: ``AWS_ENDPOINT_URL`` for any S3-compatible endpoint, the usual credential
chain (environment, profile, instance profile) and ``AWS_DEFAULT_REGION``/``AWS_REGION``. Nothing here takes or
logs a secret.

Writes are atomic: locally a temporary name in the same folder then ``os.replace``; on S3 a single object
PUT, which becomes visible only once complete, so a reader never sees half an object under its final name.
"""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pyarrow.fs as pafs

from pipeline.scratch import scratch_file


class StorageUnreachable(OSError):
    """The S3 endpoint cannot be reached at all (a wrong ``AWS_ENDPOINT_URL``, no route). The jobs report it as
    bad input (one line, exit 2) when it happens before any work; it is no ``InputError``, so a worker that
    loses the network mid-run is still retried like any lost worker."""


def _translated(uri: str | os.PathLike, exc: OSError) -> OSError:
    """pyarrow's error for a connection that never opened -> StorageUnreachable naming the URI and endpoint."""
    if "NETWORK_CONNECTION" not in str(exc):
        return exc
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS default"
    return StorageUnreachable(f"{uri}: the S3 endpoint ({endpoint}) cannot be reached")


def _info(uri: str | os.PathLike) -> pafs.FileInfo:
    fs, path = filesystem(uri)
    try:
        return fs.get_file_info(path)
    except OSError as exc:
        raise _translated(uri, exc) from exc


def is_s3(uri: str | os.PathLike) -> bool:
    return str(uri).startswith("s3://")


def join(base: str | os.PathLike, *parts: str) -> str:
    """Join path parts; URIs keep forward slashes, local paths use os.path.join."""
    base = str(base)
    if is_s3(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(base, *parts)


@functools.lru_cache(maxsize=8)
def _s3_filesystem(endpoint: str | None, region: str | None) -> pafs.S3FileSystem:
    kwargs: dict = {}
    if endpoint:
        kwargs["endpoint_override"] = endpoint
        kwargs["scheme"] = "https" if endpoint.startswith("https") else "http"
        # S3-compatible servers (moto, MinIO) serve buckets under the path, not as virtual hosts.
        kwargs["force_virtual_addressing"] = False
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


def filesystem(uri: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for a local path or s3:// URI."""
    uri = str(uri)
    if is_s3(uri):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        return _s3_filesystem(endpoint, region), uri[len("s3://") :]
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def exists(uri: str | os.PathLike) -> bool:
    return _info(uri).type != pafs.FileType.NotFound


def is_file(uri: str | os.PathLike) -> bool:
    return _info(uri).type == pafs.FileType.File


def is_dir(uri: str | os.PathLike) -> bool:
    return _info(uri).type == pafs.FileType.Directory


def file_size(uri: str | os.PathLike) -> int:
    info = _info(uri)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(str(uri))
    return int(info.size or 0)


def file_stamp(uri: str | os.PathLike) -> tuple[int, int] | None:
    """(size, modification time in ns) of a file, None when absent: one stat / HEAD request, enough to tell
    whether a file read earlier was replaced since."""
    info = _info(uri)
    if info.type == pafs.FileType.NotFound:
        return None
    return int(info.size or 0), int(info.mtime_ns or 0)


def read_bytes(uri: str | os.PathLike) -> bytes:
    if not is_s3(uri):
        return Path(uri).read_bytes()
    fs, path = filesystem(uri)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        if "NoSuchKey" in str(exc) or "Path does not exist" in str(exc):
            raise FileNotFoundError(str(uri)) from exc
        raise _translated(uri, exc) from exc


def read_text(uri: str | os.PathLike, encoding: str = "utf-8") -> str:
    return read_bytes(uri).decode(encoding)


def open_input_stream(uri: str | os.PathLike) -> IO[bytes]:
    """A readable binary stream (local file or S3 object)."""
    if not is_s3(uri):
        return open(uri, "rb")  # noqa: SIM115 - caller closes
    fs, path = filesystem(uri)
    return fs.open_input_stream(path)


def open_input_file(uri: str | os.PathLike) -> IO[bytes]:
    """A seekable binary file (needed by demuxers such as PyAV's mp4 reader)."""
    if not is_s3(uri):
        return open(uri, "rb")  # noqa: SIM115 - caller closes
    fs, path = filesystem(uri)
    return fs.open_input_file(path)


def makedirs(uri: str | os.PathLike) -> None:
    if not is_s3(uri):
        os.makedirs(uri, exist_ok=True)
    # S3 has no folders; objects create their prefixes.


@contextlib.contextmanager
def _atomic_local_file(path: str) -> Iterator[IO[bytes]]:
    """A file written under a temporary name in the target folder, renamed into place only when complete."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes_atomic(uri: str | os.PathLike, data: bytes) -> None:
    uri = str(uri)
    if is_s3(uri):
        fs, path = filesystem(uri)
        with fs.open_output_stream(path) as f:
            f.write(data)
        return
    with _atomic_local_file(uri) as f:
        f.write(data)


def write_text_atomic(uri: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(uri, text.encode("utf-8"))


def upload_file_atomic(local_path: str | os.PathLike, uri: str | os.PathLike) -> None:
    """Copy a finished local file to its final place (local rename/copy, or one S3 upload)."""
    uri = str(uri)
    if is_s3(uri):
        fs, path = filesystem(uri)
        local = pafs.LocalFileSystem()
        pafs.copy_files(os.path.abspath(local_path), path, source_filesystem=local, destination_filesystem=fs)
        return
    with open(local_path, "rb") as src, _atomic_local_file(uri) as dst:
        while chunk := src.read(1 << 22):
            dst.write(chunk)


def download_to_temp(uri: str | os.PathLike, suffix: str = "") -> str:
    """Local path of the file: the path itself if local, else a temporary copy the caller removes."""
    if not is_s3(uri):
        return str(uri)
    tmp = scratch_file("download", suffix)  # named after this process: removed by remove_abandoned if killed
    with open(tmp, "wb") as dst, open_input_stream(uri) as src:
        while chunk := src.read(1 << 22):
            dst.write(chunk)
    return tmp


def list_files(uri_dir: str | os.PathLike, suffix: str = "", recursive: bool = False) -> list[str]:
    """Sorted full URIs/paths of files directly under ``uri_dir`` (or below it) ending with ``suffix``."""
    uri_dir = str(uri_dir)
    fs, path = filesystem(uri_dir)
    selector = pafs.FileSelector(path.rstrip("/"), allow_not_found=True, recursive=recursive)
    out = []
    for info in fs.get_file_info(selector):
        if info.type == pafs.FileType.File and info.path.endswith(suffix):
            out.append("s3://" + info.path if is_s3(uri_dir) else info.path)
    return sorted(out)


def list_dirs(uri_dir: str | os.PathLike) -> list[str]:
    uri_dir = str(uri_dir)
    fs, path = filesystem(uri_dir)
    selector = pafs.FileSelector(path.rstrip("/"), allow_not_found=True, recursive=False)
    out = []
    for info in fs.get_file_info(selector):
        if info.type == pafs.FileType.Directory:
            out.append("s3://" + info.path if is_s3(uri_dir) else info.path)
    return sorted(out)


def _s3_gopen(url: str, mode: str = "rb", bufsize: int = 8192, **_: object) -> IO[bytes]:
    if mode[0] != "r":
        raise ValueError(f"{url}: only reading is supported for s3:// shards")
    return open_input_stream(url)


def register_webdataset_s3() -> None:
    """Teach WebDataset's gopen to read ``s3://`` URLs through pyarrow (clear FileNotFoundError on 404)."""
    import importlib

    # `import webdataset.gopen` binds the gopen *function* re-exported by the package; we need the module.
    importlib.import_module("webdataset.gopen").gopen_schemes["s3"] = _s3_gopen


def iter_lines(uri: str | os.PathLike, encoding: str = "utf-8-sig") -> Iterator[str]:
    """Lines of a text file without line terminators (handles CRLF and a UTF-8 BOM)."""
    yield from read_bytes(uri).decode(encoding).splitlines()
