"""Where a shard split is, in either of the two forms every job takes: the split folder itself (it holds
``index.json``), or the shard job's output folder (its parent) plus the split's name. A location in the
other form than the one given is named in the error, so a user is never left with "no shard index" alone.

    split_folder(shards, split, split_flag) -> str          evaluate: --shards DIR [--split NAME]
    parent_and_split(shards, split) -> (parent, split)      train: --shards DIR [--split NAME] (data.train_split)
    splits_under(folder) -> ["test", "train", ...]          the split folders directly under a folder
"""

from __future__ import annotations

from pipeline import storage

INDEX = "index.json"


def is_split(folder: str) -> bool:
    """``folder`` holds a shard index (the shard job's output for one split)."""
    return bool(folder) and storage.exists(storage.join(folder, INDEX))


def splits_under(folder: str) -> list[str]:
    """Names of the split folders directly under ``folder`` (each holding index.json), sorted."""
    if not folder or not storage.is_dir(folder):
        return []
    names = [d.rstrip("/").rsplit("/", 1)[-1] for d in storage.list_dirs(folder)]
    return [n for n in names if is_split(storage.join(folder, n))]


def _parent(folder: str) -> tuple[str, str]:
    parent, _, name = folder.rstrip("/").rpartition("/")
    return parent or ".", name


def missing_split(folder: str, parent: str, split_flag: str) -> FileNotFoundError:
    """No index.json in ``folder`` (= ``parent``/<split> or ``parent`` itself): the error, naming the splits
    that are there and the flag that picks one."""
    found = splits_under(parent) if parent != folder else splits_under(folder)
    if found:
        return FileNotFoundError(
            f"{folder}: no shard index; {parent} holds the splits {', '.join(found)}: give {split_flag} "
            f"{found[0]} with the folder {parent}, or the split folder {storage.join(parent, found[0])}"
        )
    return FileNotFoundError(
        f"{folder}: no shard index (a split folder holding index.json, or the shard job's output folder with "
        f"{split_flag} NAME; has the shard job finished?)"
    )


def split_folder(shards: str, split: str = "", split_flag: str = "--split") -> str:
    """The split folder of ``shards`` (a split folder) or ``shards``/``split`` (its parent plus a split name).
    Raises FileNotFoundError naming the other form when the given one holds no index."""
    if not split:
        if is_split(shards):
            return shards
        raise missing_split(shards, shards, split_flag)
    folder = storage.join(shards, split)
    if is_split(folder):
        return folder
    if is_split(shards):
        raise FileNotFoundError(
            f"{folder}: no shard index; {shards} is itself a split folder (it holds {INDEX}): drop "
            f"{split_flag} {split}, or give its parent {_parent(shards)[0]} with {split_flag} {_parent(shards)[1]}"
        )
    raise missing_split(folder, shards, split_flag)


def parent_and_split(shards: str, split: str) -> tuple[str, str]:
    """(the shard job's output folder, the split's name) for ``shards`` given as a split folder (its parent
    and its name; ``split`` is then its name or ignored when it is the default) or as the parent."""
    if is_split(shards) and not is_split(storage.join(shards, split)):
        return _parent(shards)
    return shards, split
