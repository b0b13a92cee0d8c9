"""Where a shard's tar is written before it is moved into place, and removing what a killed attempt left.

temp_tar_path(tar_uri)   local output: ``.shard-000003.tar.<host>-<pid>-<random>.partial`` beside the
                         shard; S3 output: ``<tmp>/tdn-shards/<digest>-<host>-<pid>-<random>-shard-000003.tar``
                         One name per attempt: two attempts at the same shard (a Ray retry while the
                         first is still writing, two jobs into one folder) never write the same file.
remove_stale_temporaries(folder, shard=None)   the temporaries of attempts that are over: their process
                         is gone (same host), or they are a day old (another host); ``shard`` limits it to
                         one shard's. Run by each attempt before it writes, and by the job per split.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile

from pipeline import storage
from pipeline.scratch import attempt_tag, is_stale

_LOCAL = re.compile(r"^\.(?P<shard>shard-\d+\.tar)\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[0-9a-f]+\.partial$")


def temp_tar_path(tar_uri: str) -> str:
    if not storage.is_s3(tar_uri):
        folder, name = os.path.split(tar_uri)
        os.makedirs(folder or ".", exist_ok=True)
        return os.path.join(folder, f".{name}.{attempt_tag()}.partial")
    folder = os.path.join(tempfile.gettempdir(), "tdn-shards")
    os.makedirs(folder, exist_ok=True)
    digest = hashlib.sha1(tar_uri.encode("utf-8")).hexdigest()[:20]
    return os.path.join(folder, f"{digest}-{attempt_tag()}-{os.path.basename(tar_uri)}")


def remove_stale_temporaries(split_dir: str, shard: str | None = None) -> list[str]:
    """Remove the temporaries of attempts that are over (local output; S3 PUTs leave nothing there);
    returns the names removed."""
    if storage.is_s3(split_dir) or not os.path.isdir(split_dir):
        return []
    removed = []
    for name in os.listdir(split_dir):
        match = _LOCAL.match(name)
        if match is None or (shard is not None and match["shard"] != shard):
            continue
        path = os.path.join(split_dir, name)
        if is_stale(path, match["host"], int(match["pid"])):
            try:
                os.remove(path)
                removed.append(name)
            except FileNotFoundError:
                pass  # another attempt cleaned it up first
    return removed
