"""Local and S3 storage through one API, against a real S3-compatible HTTP server."""

from __future__ import annotations

import pytest

from pipeline import storage


def _roundtrip(base: str) -> None:
    target = storage.join(base, "a", "b.bin")
    storage.write_bytes_atomic(target, b"hello")
    assert storage.exists(target) and storage.is_file(target)
    assert storage.read_bytes(target) == b"hello"
    assert storage.file_size(target) == 5
    storage.write_text_atomic(storage.join(base, "a", "c.txt"), "x\r\ny\n")
    assert list(storage.iter_lines(storage.join(base, "a", "c.txt"))) == ["x", "y"]
    assert [p.rsplit("/", 1)[-1] for p in storage.list_files(storage.join(base, "a"))] == ["b.bin", "c.txt"]
    assert storage.list_files(storage.join(base, "a"), suffix=".txt")[0].endswith("c.txt")
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(storage.join(base, "missing.bin"))
    assert not storage.exists(storage.join(base, "missing.bin"))


def test_local(tmp_path):
    _roundtrip(str(tmp_path))
    # No temporary files are left behind by atomic writes.
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.endswith(".tmp")]


def test_s3(s3_server, tmp_path):
    bucket = s3_server.create_bucket("storage-test")
    _roundtrip(bucket + "/prefix")
    local = tmp_path / "f.bin"
    local.write_bytes(b"x" * 1000)
    storage.upload_file_atomic(local, bucket + "/up/f.bin")
    assert storage.read_bytes(bucket + "/up/f.bin") == b"x" * 1000
    copy = storage.download_to_temp(bucket + "/up/f.bin")
    assert open(copy, "rb").read() == b"x" * 1000


def test_webdataset_reads_s3(s3_server, tmp_path):
    import io
    import tarfile

    import webdataset as wds

    bucket = s3_server.create_bucket("wds-test")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(3):
            data = str(i).encode()
            info = tarfile.TarInfo(f"k{i}.cls")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    storage.write_bytes_atomic(bucket + "/s/shard-000000.tar", buf.getvalue())
    storage.register_webdataset_s3()
    got = [int(s["cls"]) for s in wds.WebDataset(bucket + "/s/shard-000000.tar", shardshuffle=False)]
    assert got == [0, 1, 2]
    with pytest.raises(FileNotFoundError):
        list(wds.WebDataset(bucket + "/s/missing.tar", shardshuffle=False))
