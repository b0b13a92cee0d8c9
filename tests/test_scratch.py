"""Temporary names that say whose they are (pipeline/scratch.py, pipeline/shards/temp_files.py) and a full
disk as one line (pipeline/disk.py): what a killed process left is found and removed, a live one's never."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.disk import DiskFullError, full_disk_is_an_input_error, is_full_disk
from pipeline.errors import InputError
from pipeline.scratch import attempt_tag, host_tag, remove_abandoned
from pipeline.shards.temp_files import remove_stale_temporaries, temp_tar_path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_each_attempt_writes_its_own_temporary(tmp_path: Path) -> None:
    tar = str(tmp_path / "test" / "shard-000003.tar")
    first, second = temp_tar_path(tar), temp_tar_path(tar)
    assert first != second and os.path.dirname(first) == str(tmp_path / "test")
    assert os.path.basename(first).startswith(".shard-000003.tar.") and first.endswith(".partial")


def test_only_temporaries_of_finished_attempts_are_removed(tmp_path: Path) -> None:
    here = tmp_path / "test"
    here.mkdir()
    mine = Path(temp_tar_path(str(here / "shard-000001.tar")))
    mine.write_bytes(b"in progress")
    killed = here / f".shard-000001.tar.{host_tag()}-{dead_pid()}-abcdef.partial"
    killed.write_bytes(b"left by a kill -9")
    other = here / f".shard-000002.tar.{host_tag()}-{dead_pid()}-abcdef.partial"
    other.write_bytes(b"another shard's")
    assert remove_stale_temporaries(str(here), "shard-000001.tar") == [killed.name]
    assert mine.exists() and other.exists()
    assert remove_stale_temporaries(str(here)) == [other.name]
    assert mine.exists()


def test_abandoned_scratch_folders_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / f"tdn-model-{host_tag()}-{dead_pid()}-abcdef"
    stale.mkdir()
    (stale / "MLmodel").write_text("x")
    live = tmp_path / f"tdn-train-{attempt_tag()}"
    live.mkdir()
    unrelated = tmp_path / "tdn-model-notours"
    unrelated.mkdir()
    assert remove_abandoned(str(tmp_path)) == [stale.name]
    assert live.exists() and unrelated.exists() and not stale.exists()


def test_a_full_disk_is_one_input_error_and_the_partial_output_goes(tmp_path: Path) -> None:
    partial = tmp_path / "epoch_0003"
    partial.mkdir()
    (partial / "checkpoint.pt").write_bytes(b"half")
    with pytest.raises(DiskFullError) as caught:
        with full_disk_is_an_input_error(str(partial), 5 * 1024 * 1024, partial=[str(partial)]):
            raise OSError(errno.ENOSPC, "No space left on device")
    message = str(caught.value)
    assert message.startswith(f"{partial}: disk full: writing it needs 5.0 MiB, ") and message.endswith(
        " free"
    )
    assert isinstance(caught.value, InputError) and not partial.exists()
    assert is_full_disk(OSError("[Errno 28] No space left on device"))  # pyarrow's, without an errno
    with pytest.raises(PermissionError):
        with full_disk_is_an_input_error(str(partial), 1):
            raise PermissionError(errno.EACCES, "denied")
