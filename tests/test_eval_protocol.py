"""The evaluation protocol resolver: flags > the model's recipe > the protocol's defaults, resolved once into a
frozen EvalProtocol; the shards' clips per video checked against it. Pure functions on an in-memory index:
no Ray, no files."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.errors import InputError
from pipeline.shards.contract import SCHEMA, ResizeSettings, SamplingSettings, ShardEntry, ShardIndex
from tdn.evaluation.protocol import (
    PROTOCOLS,
    EvalConfig,
    EvalProtocol,
    TrainedSizes,
    resolve_protocol,
)
from tdn.evaluation.split import EvalSplit

UNKNOWN = TrainedSizes()


def split_of(clips: int, folder: str = "s3://bucket/shards/k400/val") -> EvalSplit:
    """An evaluation split whose index says its shards hold ``clips`` clips per video."""
    entry = ShardEntry(name="shard-000000.tar", samples=2 * clips, videos=2, bytes=1024, sha256="ab")
    index = ShardIndex(
        schema=SCHEMA,
        split="val",
        dataset="kinetics400",
        classes=["a", "b"],
        num_samples=2 * clips,
        num_videos=2,
        views_per_video=clips,
        shards=[entry],
        sampling=SamplingSettings(
            sampler="multiclip", num_segments=8, window=5, views=clips, seed=0, videos_per_shard=64
        ),
        resize=ResizeSettings(short_side=256, jpeg_quality=90, context_scale=1),
        annotation_checksums={},
        quarantined=0,
        checksum="",
    ).sealed()
    return EvalSplit(folder, index, (f"{folder}/{entry.name}",))


def sizes(cfg: EvalConfig, trained: TrainedSizes = UNKNOWN) -> tuple[int, int, str]:
    clips = cfg.clips or PROTOCOLS[cfg.protocol].clips
    p = resolve_protocol(cfg, split_of(clips), trained)
    return p.input_size, p.short_side, p.sizes_from


SSV1, K400 = EvalConfig(protocol="ssv1x1"), EvalConfig(protocol="k400_10x3")


def test_protocols_are_typed_records_keyed_by_their_name():
    assert {name: (s.clips, s.crops, s.input_size, s.short_side) for name, s in PROTOCOLS.items()} == {
        "ssv1x1": (1, 1, 224, 256),
        "k400_10x3": (10, 3, 256, 256),
    }
    assert all(spec.name == name for name, spec in PROTOCOLS.items())
    with pytest.raises(TypeError):
        PROTOCOLS["x"] = PROTOCOLS["ssv1x1"]  # type: ignore[index]


def test_without_flags_or_recipe_the_protocol_decides():
    assert sizes(SSV1) == (224, 256, "protocol")
    assert sizes(K400) == (256, 256, "protocol")
    p = resolve_protocol(K400, split_of(10), UNKNOWN)
    assert (p.name, p.clips, p.crops, p.views_per_video) == ("k400_10x3", 10, 3, 30)
    assert p.trained == UNKNOWN and p.mismatch == ""


def test_the_models_recipe_beats_the_protocol():
    assert sizes(SSV1, TrainedSizes(56, 64)) == (56, 64, "checkpoint")
    assert sizes(SSV1, TrainedSizes(224, 256)) == (224, 256, "checkpoint")
    p = resolve_protocol(SSV1, split_of(1), TrainedSizes(56, 64))
    assert p.trained == TrainedSizes(56, 64) and p.mismatch == ""


def test_a_recipe_missing_one_size_is_no_recipe():
    """A checkpoint that records only one of the two sizes says nothing: the protocol's, and none recorded."""
    for half in (TrainedSizes(56, 0), TrainedSizes(0, 64)):
        p = resolve_protocol(SSV1, split_of(1), half)
        assert (p.input_size, p.short_side, p.sizes_from, p.trained) == (224, 256, "protocol", UNKNOWN)


def test_flags_beat_the_recipe_one_size_at_a_time():
    trained = TrainedSizes(56, 64)
    assert sizes(dataclasses.replace(SSV1, input_size=224, short_side=256), trained) == (224, 256, "user")
    # only the crop given: the short side stays the model's
    assert sizes(dataclasses.replace(SSV1, input_size=40), trained) == (40, 64, "user")
    # only the short side given: the crop stays the model's
    assert sizes(dataclasses.replace(SSV1, short_side=80), trained) == (56, 80, "user")
    # flags without a recipe beat the protocol
    assert sizes(dataclasses.replace(SSV1, input_size=112)) == (112, 256, "user")


def test_three_crops_cover_the_short_side():
    """k400_10x3's crops are as large as the short side, whichever level set the short side."""
    assert sizes(K400, TrainedSizes(56, 64)) == (64, 64, "checkpoint")
    assert sizes(K400, TrainedSizes(224, 256)) == (256, 256, "checkpoint")  # the paper's Kinetics protocol
    assert sizes(dataclasses.replace(K400, short_side=80), TrainedSizes(56, 64)) == (80, 80, "user")
    assert sizes(dataclasses.replace(K400, short_side=288)) == (288, 288, "user")
    p = resolve_protocol(K400, split_of(10), TrainedSizes(56, 64))
    assert p.input_size == p.short_side == 64 and p.crops == 3


def test_the_mismatch_names_what_was_given_and_what_the_model_wants():
    trained = TrainedSizes(56, 64)
    p = resolve_protocol(dataclasses.replace(SSV1, input_size=224, short_side=256), split_of(1), trained)
    assert p.mismatch == (
        "evaluating at input size 224, short side 256, but the model was trained at input size 56 "
        "(eval short side 64): its ssv1x1 sizes are 56 / 64"
    )
    k = resolve_protocol(dataclasses.replace(K400, short_side=80), split_of(10), trained)
    assert k.mismatch.endswith("its k400_10x3 sizes are 64 / 64"), k.mismatch
    # flags equal to the model's own sizes, or no recipe to differ from: no warning
    same = dataclasses.replace(SSV1, input_size=56)
    assert resolve_protocol(same, split_of(1), trained).mismatch == ""
    assert resolve_protocol(dataclasses.replace(SSV1, input_size=40), split_of(1), UNKNOWN).mismatch == ""


def test_the_shards_must_hold_the_protocols_clips():
    with pytest.raises(InputError) as caught:
        resolve_protocol(K400, split_of(1, folder="shards/k400/val"), UNKNOWN)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("shards/k400/val: ")
    assert "hold 1 clip(s) per video, protocol k400_10x3 needs 10" in message
    with pytest.raises(InputError, match=r"needs 1 \(eval.clips 1\)"):
        resolve_protocol(dataclasses.replace(SSV1, clips=1), split_of(2), UNKNOWN)
    # eval.clips given: the shards' count, not the protocol's, is what is checked
    p = resolve_protocol(dataclasses.replace(K400, clips=2), split_of(2), UNKNOWN)
    assert (p.clips, p.crops, p.views_per_video) == (2, 3, 6)


def test_the_resolved_protocol_is_frozen():
    p = resolve_protocol(SSV1, split_of(1), UNKNOWN)
    assert isinstance(p, EvalProtocol)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.input_size = 112  # type: ignore[misc]
