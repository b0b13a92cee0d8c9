"""The on-disk shard contract (pipeline/shards/contract.py): round trips, errors that name the file and every
unknown or missing field, fields that files of earlier versions lack, and the index checksum."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pipeline.shards.contract import (
    SCHEMA,
    ContractError,
    DryRunReport,
    DryRunSplit,
    QuarantineEntry,
    ResizeSettings,
    SampleMeta,
    SamplingSettings,
    ShardEntry,
    ShardIndex,
    ShardJobSummary,
    ShardSidecar,
    SplitSummary,
    decode_sample_metadata,
    encode_sample,
    index_checksum,
)

INDEX = ShardIndex(
    schema=SCHEMA,
    split="train",
    dataset="ucf101",
    classes=["a", "b"],
    num_samples=4,
    num_videos=2,
    views_per_video=2,
    shards=[ShardEntry(name="shard-000000.tar", samples=4, videos=2, bytes=30720, sha256="ab")],
    sampling=SamplingSettings(
        sampler="train", num_segments=8, window=5, views=2, seed=0, videos_per_shard=64
    ),
    resize=ResizeSettings(
        short_side=320, upscale=False, jpeg_quality=90, context_scale=1, jpeg_encoder="simplejpeg"
    ),
    annotation_checksums={"classInd.txt": "00"},
    quarantined=1,
    checksum="",
).sealed()
SIDECAR = ShardSidecar(
    name="shard-000000.tar",
    split="train",
    samples=4,
    videos=2,
    bytes=30720,
    sha256="ab",
    video_ids=["x", "y"],
    clamped=[],
    quarantine=[QuarantineEntry(path="/v/z.mp4", video_id="z", stage="open", error="bad")],
    inputs="f00",
)


def test_records_round_trip_through_json() -> None:
    summary = ShardJobSummary(
        dataset="ucf101",
        output="out",
        ok=True,
        seconds=1.5,
        videos_per_s=2.0,
        splits={
            "train": SplitSummary(
                listed=3,
                missing=1,
                videos=2,
                samples=4,
                shards=1,
                shards_already_done=0,
                shards_rewritten=0,
                quarantined=1,
                failed_fraction=0.333333,
                checksum="c",
            )
        },
    )
    report = DryRunReport(dataset="ucf101", num_classes=2, splits={"test": DryRunSplit(2, 2, 0)})
    for record in (INDEX, SIDECAR, summary, report, SIDECAR.quarantine[0]):
        assert type(record).from_json(record.to_json(indent=1), "mem") == record
    assert INDEX.checksum == index_checksum(INDEX.to_dict())
    # On disk the index keeps the field order it always had.
    resize_fields = list(json.loads(INDEX.to_json())["resize"])
    assert resize_fields == ["short_side", "upscale", "jpeg_quality", "context_scale", "jpeg_encoder"]


def test_unknown_and_missing_fields_are_named_with_the_file() -> None:
    data = SIDECAR.to_dict()
    data["sha265"] = data.pop("sha256")
    message = r"^out/shard-000000.tar.json: ShardSidecar: unknown field 'sha265', missing field 'sha256'$"
    with pytest.raises(ContractError, match=message):
        ShardSidecar.from_dict(data, "out/shard-000000.tar.json")
    data = SIDECAR.to_dict()
    data["quarantine"][0]["reason"] = "x"
    message = r"^shard-000000.tar.json quarantine\[0\]: QuarantineEntry: unknown field 'reason'$"
    with pytest.raises(ContractError, match=message):
        ShardSidecar.from_dict(data, "shard-000000.tar.json")
    with pytest.raises(ContractError, match="index.json: not valid JSON"):
        ShardIndex.from_json("{", "index.json")
    with pytest.raises(ContractError, match="index.json: ShardIndex must be a JSON object, got list"):
        ShardIndex.from_json("[]", "index.json")


def test_index_schema_and_checksum_are_verified() -> None:
    data = INDEX.to_dict()
    data["schema"] = "tdn-shards/2"
    with pytest.raises(ContractError, match="schema 'tdn-shards/2', this code reads 'tdn-shards/1'"):
        ShardIndex.from_dict(data, "index.json")
    edited = dataclasses.replace(INDEX, num_videos=3)
    with pytest.raises(ContractError, match="index.json: checksum does not match its content"):
        ShardIndex.from_json(edited.to_json(), "index.json")
    data = INDEX.to_dict()
    data["resize"]["size"] = 1
    data["checksum"] = index_checksum(data)  # a consistent index with a field no version wrote
    with pytest.raises(ContractError, match=r"index.json resize: ResizeSettings: unknown field 'size'"):
        ShardIndex.from_dict(data, "index.json")


def test_files_of_earlier_versions_load_with_their_implied_values() -> None:
    """Sidecars before the task fingerprint; indexes before ``upscale`` and before ``jpeg_encoder``."""
    side = SIDECAR.to_dict()
    del side["inputs"]
    assert ShardSidecar.from_dict(side, "old sidecar").inputs is None  # never a fingerprint: rewritten
    data = INDEX.to_dict()
    del data["resize"]["upscale"], data["resize"]["jpeg_encoder"]
    data["checksum"] = index_checksum(data)  # the checksum of the file as that version wrote it
    resize = ShardIndex.from_dict(data, "old index").resize
    assert (resize.upscale, resize.jpeg_encoder) == (True, "pil")


def test_sample_metadata_is_checked_by_field() -> None:
    meta = SampleMeta(
        video_id="v.1 ä",
        label=1,
        view=0,
        num_views=1,
        split="val",
        source="/v.mp4",
        fps=25.0,
        num_frames=3,
        frame_indices=[[0, 0, 1, 2, 2]],
        stored_frames=[0, 1, 2],
        jpeg_sizes=[1, 1, 1],
        frame_scales=[1, 1, 1],
        height=48,
        width=64,
    )
    members = encode_sample(meta, [b"a", b"b", b"c"])
    assert decode_sample_metadata({"json": members["json"]}) == meta
    assert SampleMeta.from_dict(meta.to_dict(), "m") == meta
    data = meta.to_dict()
    del data["frame_scales"]
    with pytest.raises(ContractError, match=r"^k.json: SampleMeta: missing field 'frame_scales'$"):
        decode_sample_metadata({"json": json.dumps(data).encode()}, "k.json")
