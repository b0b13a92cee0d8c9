"""Shards are verified while they are read (issue 14, item 3) and stay where they belong (item 9): a stored
JPEG's CRC32 is checked where it is decoded, a shard's size and sha256 against its index entry as it streams
in, an evaluation must score every video its index lists, shard names cannot leave the split folder, and a
killed shard writer leaves no temporary file behind once its shard is written again."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from pipeline import storage
from pipeline.loading.config import LoaderConfig
from pipeline.loading.eval_loader import eval_batches
from pipeline.loading.shard_reading import indexed_shards, read_index
from pipeline.loading.train_loader import train_loader
from pipeline.shards.contract import (
    ContractError,
    CorruptShardError,
    ResizeSettings,
    SampleMeta,
    SamplingSettings,
)
from pipeline.shards.sampling import CentreSampler
from pipeline.shards.writer import EncodeSettings, ShardTask, VideoItem, build_index, write_shard
from tdn.evaluation.batch_inference import evaluate
from tdn.evaluation.model_source import ModelSource
from tdn.evaluation.protocol import EvalConfig
from tests.eval_shards import save_tiny_checkpoint
from tests.loader_shards import reseal_index
from tests.video_zoo import Spec, encode_video

ROOT = Path(__file__).resolve().parent.parent
LEGACY = ROOT / "tests" / "data" / "legacy_shards"
SEGMENTS = 3
CLASSES = ["a", "b", "c"]


def _task(videos: Path, split_dir: Path) -> ShardTask:
    items = tuple(VideoItem(f"video {i}", str(videos / f"v{i}.mp4"), i % 3, "test") for i in range(3))
    return ShardTask(
        split="test",
        shard_index=0,
        split_dir=str(split_dir),
        videos=items,
        sampler=CentreSampler(SEGMENTS),
        seed=0,
        encode=EncodeSettings(short_side=48, jpeg_quality=90),
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One evaluation split (3 videos in one shard) written by the shard writer, with its index."""
    root = tmp_path_factory.mktemp("integrity")
    (root / "videos").mkdir()
    for i in range(3):
        encode_video(root / "videos" / f"v{i}.mp4", Spec("libx264", "yuv420p", frames=16))
    split_dir = root / "shards" / "test"
    result = write_shard(_task(root / "videos", split_dir))
    index = build_index(
        split="test",
        dataset="csv",
        classes=CLASSES,
        sidecars=[result.sidecar],
        views_per_video=1,
        sampling=SamplingSettings("centre", SEGMENTS, 5, 1, 0, 3),
        resize=ResizeSettings(short_side=48, jpeg_quality=90, context_scale=1, jpeg_encoder="simplejpeg"),
        annotation_checksums={},
        quarantined=0,
    )
    storage.write_text_atomic(str(split_dir / "index.json"), index.to_json())
    return root


@pytest.fixture
def split(written: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(written / "shards" / "test", tmp_path / "test"))


CFG = LoaderConfig(batch_size=2, num_workers=0, input_size=32, eval_short_side=40, eval_crops=1)


def _read_all(split_dir: Path) -> int:
    return sum(len(b.video_ids) for b in eval_batches(str(split_dir), CFG, batch_size=4))


def _train_all(split_dir: Path) -> int:
    return sum(len(y) for _, y in train_loader(str(split_dir), CFG, rank=0, world_size=1, epoch=0))


def test_written_samples_carry_frame_crcs_and_read_back(split: Path) -> None:
    with tarfile.open(split / "shard-000000.tar") as tar:
        metas = [
            SampleMeta.from_json(tar.extractfile(m).read(), m.name)  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.name.endswith(".json")
        ]
    assert len(metas) == 3 and all(m.jpeg_crc32 and len(m.jpeg_crc32) == len(m.jpeg_sizes) for m in metas)
    assert _read_all(split) == 3 and _train_all(split) == 4  # 2 steps of 2


def test_flipped_jpeg_bytes_fail_the_frame_crc(split: Path) -> None:
    """Bytes changed inside a JPEG's scan data decode to other pixels without any error: the CRC32 recorded
    at write time catches them (the index resealed, so the shard digest passes and only the CRC can)."""
    shard = split / "shard-000000.tar"
    data = bytearray(shard.read_bytes())
    scan = data.find(b"\xff\xda")  # start of scan of the first JPEG
    for i in range(scan + 40, scan + 48):
        data[i] ^= 0x01
    shard.write_bytes(bytes(data))
    reseal_index(str(split))
    with pytest.raises(ValueError, match=r"shard-000000.tar sample .*fails its CRC32"):
        _read_all(split)
    with pytest.raises(ValueError, match=r"shard-000000.tar sample .*fails its CRC32"):
        _train_all(split)
    device = dataclasses.replace(CFG, decode="device")
    with pytest.raises(ValueError, match="fails its CRC32"):
        list(eval_batches(str(split), device, batch_size=4))


def _cut_after_first_sample(shard: Path) -> None:
    """Cut the tar at a member boundary after the first sample: still a valid, shorter tar."""
    with tarfile.open(shard) as tar:
        members = tar.getmembers()
    first_key = members[0].name.split(".")[0]
    nxt = next(m for m in members if not m.name.startswith(first_key))
    shard.write_bytes(shard.read_bytes()[: nxt.offset])


def test_tar_cut_at_a_member_boundary_fails_the_shard_digest(split: Path) -> None:
    _cut_after_first_sample(split / "shard-000000.tar")
    with pytest.raises(
        CorruptShardError, match=r"shard-000000.tar: \d+ bytes with sha256 .*index.json lists"
    ):
        _read_all(split)
    with pytest.raises(CorruptShardError, match="index.json lists"):
        _train_all(split)


def test_legacy_shards_without_crcs_still_have_their_digest_checked(tmp_path: Path) -> None:
    legacy = Path(shutil.copytree(LEGACY, tmp_path / "legacy"))
    cfg = LoaderConfig(num_workers=0, input_size=32, eval_short_side=40, eval_crops=1)
    assert sum(len(b.video_ids) for b in eval_batches(str(legacy / "test"), cfg, batch_size=4)) == 2
    shard = legacy / "test" / read_index(str(legacy / "test")).shards[0].name
    data = bytearray(shard.read_bytes())
    data[data.find(b"\xff\xda") + 40] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptShardError, match="index.json lists"):
        list(eval_batches(str(legacy / "test"), cfg, batch_size=4))


def test_evaluation_fails_when_fewer_videos_are_scored_than_the_index_lists(
    split: Path, tmp_path: Path
) -> None:
    """An index whose num_videos disagrees with the shards (sealed, digests intact) gives no result."""
    index = read_index(str(split))
    storage.write_text_atomic(
        str(split / "index.json"), dataclasses.replace(index, num_videos=4).sealed().to_json()
    )
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", len(CLASSES), CLASSES, num_segments=SEGMENTS)
    cfg = EvalConfig(input_size=56, short_side=64, engine="local", device="cpu", batch_size=4)
    with pytest.raises(CorruptShardError, match="3 videos scored, index.json lists 4"):
        evaluate(ModelSource(uri=ckpt), str(split), cfg, tmp_path / "out", log_to_mlflow=False)


@pytest.mark.parametrize("name", ["../x.tar", "/etc/x.tar", "sub/../../x.tar", "..", ""])
def test_index_shard_names_may_not_leave_the_split_folder(split: Path, name: str) -> None:
    index = read_index(str(split))
    moved = dataclasses.replace(index, shards=[dataclasses.replace(index.shards[0], name=name)]).sealed()
    (split / "index.json").write_text(moved.to_json())
    with pytest.raises(ContractError, match="is not a file name inside the split folder"):
        read_index(str(split))


def test_training_validation_needs_a_verified_index(split: Path) -> None:
    assert indexed_shards(str(split)) == [str(split / "shard-000000.tar")]
    (split / "index.json").unlink()  # tars alone: nothing to verify them against
    with pytest.raises(FileNotFoundError, match="no shard index"):
        indexed_shards(str(split))


_CHILD = """
import sys
from pathlib import Path
from pipeline.shards.writer import write_shard
from tests.test_shard_integrity import _task
write_shard(_task(Path(sys.argv[1]), Path(sys.argv[2])))
"""


def test_killed_shard_writer_leaves_no_temporary_file(written: Path, tmp_path: Path) -> None:
    """SIGKILL a writer mid-shard, write the shard again (what a Ray retry does): no temporary tar is left,
    neither in the temp folder nor beside the shards."""
    tmp, split_dir = tmp_path / "tmp", tmp_path / "out" / "test"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", _CHILD, str(written / "videos"), str(split_dir)]
    child = subprocess.Popen(argv, env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not any(p for p in [*tmp.rglob("*.tar"), *split_dir.parent.rglob("*.partial")] if p.is_file()):
        assert child.poll() is None and time.monotonic() < deadline, "the writer never started its tar"
        time.sleep(0.002)
    child.kill()
    child.wait()
    assert not (split_dir / "shard-000000.tar").exists()
    write_shard(_task(written / "videos", split_dir))  # the retry
    left = [p for p in [*tmp.rglob("*"), *split_dir.parent.rglob("*")] if p.is_file()]
    assert sorted(p.name for p in left) == ["shard-000000.tar", "shard-000000.tar.json"]


@pytest.mark.parametrize("check_exists", [True, False])
def test_annotation_paths_may_not_climb_out_of_the_dataset_root(tmp_path: Path, check_exists: bool) -> None:
    from pipeline.datasets import AnnotationError, DatasetConfig, load_dataset

    (tmp_path / "videos").mkdir()
    (tmp_path / "secret.mp4").write_bytes(b"x")
    (tmp_path / "train.csv").write_text("path,label\nvideos/../../secret.mp4,cat\n")
    cfg = DatasetConfig(
        format="csv",
        root=str(tmp_path / "videos"),
        annotations=str(tmp_path / "train.csv"),
        check_exists=check_exists,
    )
    with pytest.raises(AnnotationError, match=r"'videos/../../secret.mp4' leaves the dataset root"):
        load_dataset(cfg)
    allowed = load_dataset(dataclasses.replace(cfg, allow_outside_root=True))
    assert [os.path.normpath(r.path) for r in allowed.splits["train"]] == (
        [str(tmp_path / "secret.mp4")] if not check_exists else []
    )


def test_a_shard_written_to_s3_leaves_no_local_temporary_file(written: Path, s3_server) -> None:
    """S3 output goes through a local file under <tmp>/tdn-shards/, removed once uploaded; the uploaded
    shard reads back verified."""
    from pipeline.shards.temp_files import temp_tar_path

    remote = f"{s3_server.create_bucket('integrity')}/shards/test"
    task = dataclasses.replace(_task(written / "videos", Path(".")), split_dir=remote)
    result = write_shard(task)
    local = Path(temp_tar_path(storage.join(remote, task.name)))  # a name in the folder every attempt uses
    assert local.parent.name == "tdn-shards" and not list(local.parent.glob(f"*-{task.name}"))
    assert storage.exists(storage.join(remote, "shard-000000.tar"))
    entry = read_index(str(written / "shards" / "test")).shards[0]
    assert (result.sidecar.bytes, result.sidecar.sha256) == (entry.bytes, entry.sha256)  # same bytes as local
