"""Annotation parsers on files written in each official format, quirks included."""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline import storage
from pipeline.datasets import AnnotationError, DatasetConfig, DatasetIndex, load_dataset
from pipeline.synthetic.generate import SyntheticConfig, generate, load_manifest


def _missing(index) -> dict[str, list[str]]:
    """split -> paths of the listed videos not found (the records carry ids and labels too)."""
    return {split: [m.path for m in records] for split, records in index.missing.items()}


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real (tiny) encoded video; the parsers only need files to exist, but they are real files."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(25, 1))
        s.width = s.height = 16
        s.pix_fmt = "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 40 * i, np.uint8), format="rgb24")
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path.read_bytes()


def put(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def by_id(index: DatasetIndex, split: str) -> dict:
    return {r.video_id: r for r in index.splits[split]}


# ---------------------------------------------------------------- UCF101


def write_ucf101(root: Path, clip: bytes) -> Path:
    lists = root / "ucfTrainTestlist"
    # CRLF everywhere, as shipped; a BOM and a trailing blank line are tolerated too
    put(lists / "classInd.txt", "\ufeff1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n3 YoYo\r\n\r\n")
    for split, (train, test) in {
        1: (
            [
                "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1",
                "HandstandPushups/v_HandStandPushups_g08_c01.avi 2",
                "YoYo/v_YoYo_g25_c05.avi 3",
                "YoYo/v_YoYo_g09_c01.avi 3",
            ],
            [
                "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
                "HandstandPushups/v_HandStandPushups_g01_c01.avi",
                "YoYo/v_YoYo_g07_c03.avi",
            ],
        ),
        2: (
            [
                "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1",
                "HandStandPushups/v_HandStandPushups_g01_c01.avi 2",
            ],
            ["YoYo/v_YoYo_g09_c01.avi", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"],
        ),
        3: (["YoYo/v_YoYo_g07_c03.avi 3"], ["YoYo/v_YoYo_g25_c05.avi"]),
    }.items():
        put(lists / f"trainlist{split:02d}.txt", "".join(line + "\r\n" for line in train))
        put(lists / f"testlist{split:02d}.txt", "".join(line + "\r\n" for line in test))
    for rel in (
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
        "HandstandPushups/v_HandStandPushups_g08_c01.avi",
        "HandstandPushups/v_HandStandPushups_g01_c01.avi",
        "YoYo/v_YoYo_g25_c05.avi",
        "YoYo/v_YoYo_g07_c03.avi",
    ):
        put(root / rel, clip)  # v_YoYo_g09_c01.avi is listed but absent
    return lists


def test_ucf101_official_format(tmp_path: Path, clip_bytes: bytes) -> None:
    lists = write_ucf101(tmp_path, clip_bytes)
    index = load_dataset(DatasetConfig(format="ucf101", root=str(tmp_path)))
    assert index.name == "ucf101" and index.classes == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    train, test = by_id(index, "train"), by_id(index, "test")
    assert set(train) == {"v_ApplyEyeMakeup_g08_c01", "v_HandStandPushups_g08_c01", "v_YoYo_g25_c05"}
    assert train["v_HandStandPushups_g08_c01"].label == 1 and train["v_YoYo_g25_c05"].label == 2
    assert train["v_YoYo_g25_c05"].path == str(tmp_path / "YoYo" / "v_YoYo_g25_c05.avi")
    # test lists carry no label: it comes from the class folder through classInd
    assert {k: r.label for k, r in test.items()} == {
        "v_ApplyEyeMakeup_g01_c01": 0,
        "v_HandStandPushups_g01_c01": 1,
        "v_YoYo_g07_c03": 2,
    }
    assert all(r.split == "test" for r in test.values())
    assert _missing(index) == {"train": [str(tmp_path / "YoYo" / "v_YoYo_g09_c01.avi")], "test": []}
    assert index.annotation_checksums == {
        n: sha(lists / n) for n in ("classInd.txt", "testlist01.txt", "trainlist01.txt")
    }
    # split 2: a list naming the folder in another case still finds HandstandPushups/ on disk
    index2 = load_dataset(DatasetConfig(format="ucf101", root=str(tmp_path), split_number=2))
    train2 = by_id(index2, "train")
    assert train2["v_HandStandPushups_g01_c01"].path == str(
        tmp_path / "HandstandPushups" / "v_HandStandPushups_g01_c01.avi"
    )
    assert train2["v_HandStandPushups_g01_c01"].label == 1
    assert _missing(index2)["test"] == [str(tmp_path / "YoYo" / "v_YoYo_g09_c01.avi")]
    assert (
        "trainlist02.txt" in index2.annotation_checksums
        and "trainlist01.txt" not in index2.annotation_checksums
    )
    # without the existence check every listed video is a record
    unchecked = load_dataset(DatasetConfig(format="ucf101", root=str(tmp_path), check_exists=False))
    assert len(unchecked.splits["train"]) == 4 and _missing(unchecked) == {"train": [], "test": []}


def test_ucf101_videos_reencoded_to_another_container_are_found(tmp_path: Path, clip_bytes: bytes) -> None:
    write_ucf101(tmp_path, clip_bytes)
    put(tmp_path / "YoYo" / "v_YoYo_g09_c01.mp4", clip_bytes)
    index = load_dataset(DatasetConfig(format="ucf101", root=str(tmp_path)))
    assert by_id(index, "train")["v_YoYo_g09_c01"].path.endswith("v_YoYo_g09_c01.mp4")
    assert _missing(index)["train"] == []


@pytest.mark.parametrize(
    ("file", "line", "message"),
    [
        ("trainlist01.txt", "YoYo/v_YoYo_g01_c01.avi 9", "does not match class folder"),
        ("trainlist01.txt", "Juggling/v_Juggling_g01_c01.avi 1", "not in classInd.txt"),
        ("trainlist01.txt", "v_YoYo_g01_c01.avi 3", "expected"),
        ("testlist01.txt", "YoYo/v_YoYo_g01_c01.avi 3 extra", "expected"),
        ("classInd.txt", "7 Juggling", "out of order"),
    ],
)
def test_ucf101_errors_name_file_and_line(
    tmp_path: Path, clip_bytes: bytes, file: str, line: str, message: str
):
    lists = write_ucf101(tmp_path, clip_bytes)
    lines = [x for x in (lists / file).read_bytes().decode("utf-8-sig").split("\r\n") if x]
    put(lists / file, "".join(x + "\r\n" for x in [*lines, line]))
    n = len(lines) + 1
    with pytest.raises(AnnotationError, match=rf"{file}:{n}: .*{message}"):
        load_dataset(DatasetConfig(format="ucf101", root=str(tmp_path)))


def test_ucf101_missing_annotation_file_and_bad_split(tmp_path: Path, clip_bytes: bytes) -> None:
    lists = write_ucf101(tmp_path, clip_bytes)
    (lists / "testlist03.txt").unlink()
    with pytest.raises(AnnotationError, match="testlist03.txt: annotation file not found"):
        load_dataset(DatasetConfig(format="ucf101", root=str(tmp_path), split_number=3))
    with pytest.raises(AnnotationError, match="split_number"):
        load_dataset(DatasetConfig(format="ucf101", root=str(tmp_path), split_number=4))


def test_synthetic_ucf101_parses_with_manifest_labels(synthetic_ucf101: Path) -> None:
    manifest = {Path(v.path).stem: v for v in load_manifest(synthetic_ucf101)}
    seen_test = []
    for split_number in (1, 2, 3):
        index = load_dataset(
            DatasetConfig(format="ucf101", root=str(synthetic_ucf101), split_number=split_number)
        )
        assert index.classes == ["MoveLeft", "MoveRight", "MoveUp", "MoveDown"]
        assert _missing(index) == {"train": [], "test": []}
        records = index.splits["train"] + index.splits["test"]
        assert sorted(r.video_id for r in records) == sorted(manifest)
        for r in records:
            assert r.label == manifest[r.video_id].label and Path(r.path).is_file()
        seen_test.append({r.video_id for r in index.splits["test"]})
    assert seen_test[0] != seen_test[1] != seen_test[2]


@pytest.mark.integration
def test_ucf101_on_s3_matches_local(s3_server, synthetic_ucf101: Path) -> None:
    bucket = s3_server.create_bucket("datasets-test")
    for path in sorted(synthetic_ucf101.rglob("*")):
        if path.is_file() and "v_MoveLeft_g01" not in path.name:  # one video left out: reported missing
            storage.write_bytes_atomic(
                f"{bucket}/ucf/{path.relative_to(synthetic_ucf101).as_posix()}", path.read_bytes()
            )
    local = load_dataset(DatasetConfig(format="ucf101", root=str(synthetic_ucf101)))
    remote = load_dataset(DatasetConfig(format="ucf101", root=f"{bucket}/ucf"))
    assert remote.classes == local.classes and remote.annotation_checksums == local.annotation_checksums
    for split in ("train", "test"):
        expect = {(r.video_id, r.label) for r in local.splits[split] if "v_MoveLeft_g01" not in r.video_id}
        assert {(r.video_id, r.label) for r in remote.splits[split]} == expect
        assert all(r.path.startswith(f"{bucket}/ucf/") for r in remote.splits[split])
    assert _missing(remote)["test"] == [f"{bucket}/ucf/MoveLeft/v_MoveLeft_g01_c01.mp4"]


# ---------------------------------------------------------------- HMDB51


def test_hmdb51_official_format(tmp_path: Path, clip_bytes: bytes) -> None:
    splits = tmp_path / "testTrainMulti_7030_splits"
    put(
        splits / "brush_hair_test_split1.txt",
        "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \nApril_09_brush_hair_u_nm_np1_ba_goo_1.avi 2 \n"
        "Aussie_Brushing_Hair!_brush_hair_u_nm_np2_le_med_2.avi 0 \n",
    )
    put(splits / "cartwheel_test_split1.txt", "(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi 2 \n")
    put(splits / "brush_hair_test_split2.txt", "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 2 \n")
    put(splits / "cartwheel_test_split2.txt", "(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi 1 \n")
    put(
        splits / "brush_hair_train_split1.txt", "not a test split file 7 \n"
    )  # ignored: not *_test_split1.txt
    put(tmp_path / "brush_hair" / "April_09_brush_hair_u_nm_np1_ba_goo_0.avi", clip_bytes)
    put(tmp_path / "cartwheel" / "(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi", clip_bytes)
    index = load_dataset(DatasetConfig(format="hmdb51", root=str(tmp_path)))
    assert index.classes == ["brush_hair", "cartwheel"]
    assert [(r.video_id, r.label) for r in index.splits["train"]] == [
        ("April_09_brush_hair_u_nm_np1_ba_goo_0", 0)
    ]
    assert [(r.video_id, r.label) for r in index.splits["test"]] == [
        ("(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0", 1)
    ]
    assert _missing(index) == {
        "train": [],
        "test": [str(tmp_path / "brush_hair" / "April_09_brush_hair_u_nm_np1_ba_goo_1.avi")],
    }
    assert set(index.annotation_checksums) == {"brush_hair_test_split1.txt", "cartwheel_test_split1.txt"}
    index2 = load_dataset(DatasetConfig(format="hmdb51", root=str(tmp_path), split_number=2))
    assert [r.label for r in index2.splits["train"]] == [1] and [r.label for r in index2.splits["test"]] == [
        0
    ]
    put(splits / "cartwheel_test_split1.txt", "a.avi 1 \nb.avi 3 \n")
    with pytest.raises(AnnotationError, match=r"cartwheel_test_split1.txt:2: expected"):
        load_dataset(DatasetConfig(format="hmdb51", root=str(tmp_path)))


def test_hmdb51_synthetic_layout(tmp_path: Path) -> None:
    cfg = SyntheticConfig(
        classes=2,
        videos_per_class=5,
        codec="mpeg4",
        layout="hmdb51",
        min_frames=6,
        max_frames=8,
        sizes=((32, 32),),
    )
    videos = generate(cfg, tmp_path)
    index = load_dataset(DatasetConfig(format="hmdb51", root=str(tmp_path)))
    labels = {Path(v.path).stem: v.label for v in videos}
    records = index.splits["train"] + index.splits["test"]
    assert len(records) == 10 and all(labels[r.video_id] == r.label for r in records)
    assert len(index.splits["test"]) == 4 and not any(index.missing.values())


# ---------------------------------------------------------------- Kinetics


K_TRAIN = (
    "label,youtube_id,time_start,time_end,split,is_cc\n"
    '"passing American football (in game)",-0V4a8xXV5M,10,20,train,0\n'
    '"dancing, ballet-ish",--07WQ2iBlw,1,11,train,0\n'
    "abseiling,0347ZoDXyP0,305,315,train,1\n"
    "abseiling,0347ZoDXyP0,305,315,train,1\n"  # the same row twice: kept once
    "abseiling,zzzMissing01,0,10,train,0\n"
)
K_VAL = "label,youtube_id,time_start,time_end,split\nabseiling,3Hb9w-2yZpI,17,27,validate\n"
K_TEST = "youtube_id,time_start,time_end,split\n-_3I6jMhv6s,0,10,test\n"


def test_kinetics_csv(tmp_path: Path, clip_bytes: bytes) -> None:
    ann = tmp_path / "annotations"
    put(ann / "train.csv", K_TRAIN)
    put(ann / "validate.csv", K_VAL)
    put(ann / "test.csv", K_TEST)
    put(ann / "README.csv", "not,an,annotation\n")  # names no split: ignored
    videos = tmp_path / "videos"
    put(
        videos / "train" / "passing American football (in game)" / "-0V4a8xXV5M_000010_000020.mp4", clip_bytes
    )
    put(videos / "train" / "dancing_ballet" / "--07WQ2iBlw_000001_000011.mp4", clip_bytes)
    put(videos / "0347ZoDXyP0_000305_000315.mkv", clip_bytes)  # flat, another container
    put(videos / "val" / "3Hb9w-2yZpI_000017_000027.mp4", clip_bytes)
    put(videos / "-_3I6jMhv6s_000000_000010.mp4", clip_bytes)
    index = load_dataset(DatasetConfig(format="kinetics", root=str(videos), annotations=str(ann)))
    assert index.classes == ["abseiling", "dancing, ballet-ish", "passing American football (in game)"]
    train = by_id(index, "train")
    assert {k: r.label for k, r in train.items()} == {
        "-0V4a8xXV5M_000010_000020": 2,
        "--07WQ2iBlw_000001_000011": 1,
        "0347ZoDXyP0_000305_000315": 0,
    }
    assert train["0347ZoDXyP0_000305_000315"].path.endswith(".mkv")
    assert [(r.video_id, r.label, r.split) for r in index.splits["val"]] == [
        ("3Hb9w-2yZpI_000017_000027", 0, "val")
    ]
    assert [(r.video_id, r.label) for r in index.splits["test"]] == [("-_3I6jMhv6s_000000_000010", -1)]
    assert _missing(index)["train"] == [str(videos / "zzzMissing01_000000_000010.mp4")]
    assert index.annotation_checksums == {n: sha(ann / n) for n in ("test.csv", "train.csv", "validate.csv")}
    # one CSV file instead of a folder
    single = load_dataset(
        DatasetConfig(format="kinetics", root=str(videos), annotations=str(ann / "validate.csv"))
    )
    assert single.classes == ["abseiling"] and len(single.splits["val"]) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            K_VAL.replace("abseiling", "juggling fire"),
            r"validate.csv:2: label 'juggling fire' is not a training class",
        ),
        (K_VAL.replace(",validate", ""), r"validate.csv:2: expected 5 fields"),
        (K_VAL.replace(",17,", ",seventeen,"), r"validate.csv:2: time_start is not a number"),
        (K_VAL.replace("youtube_id", "ytid"), r"validate.csv:1: header .* lacks 'youtube_id'"),
    ],
)
def test_kinetics_errors(tmp_path: Path, text: str, message: str) -> None:
    put(tmp_path / "train.csv", K_TRAIN)
    put(tmp_path / "validate.csv", text)
    with pytest.raises(AnnotationError, match=message):
        load_dataset(DatasetConfig(format="kinetics", root=str(tmp_path), check_exists=False))


# ---------------------------------------------------------------- Something-Something


SS2_LABELS = {
    "Approaching something with your camera": "0",
    "Putting something next to something": "1",
    "Holding something": "2",
}


def test_ssv2_json(tmp_path: Path, clip_bytes: bytes) -> None:
    put(tmp_path / "something-something-v2-labels.json", json.dumps(SS2_LABELS, indent=4))
    train = [
        {
            "id": "78687",
            "label": "putting a pen next to a cup",
            "template": "Putting [something] next to [something]",
            "placeholders": ["a pen", "a cup"],
        },
        {
            "id": "42326",
            "label": "approaching a tree with your camera",
            "template": "Approaching [something] with your camera",
            "placeholders": ["a tree"],
        },
        {"id": "100", "label": "holding x", "template": "Holding [something]", "placeholders": ["x"]},
    ]
    put(tmp_path / "something-something-v2-train.json", json.dumps(train))
    put(
        tmp_path / "something-something-v2-validation.json",
        json.dumps(
            [{"id": "5", "label": "holding y", "template": "Holding [something]", "placeholders": ["y"]}]
        ),
    )
    put(tmp_path / "something-something-v2-test.json", json.dumps([{"id": "1420"}]))
    for vid in ("78687", "42326", "5", "1420"):
        put(tmp_path / "videos" / f"{vid}.webm", clip_bytes)
    index = load_dataset(
        DatasetConfig(format="ssv2", root=str(tmp_path / "videos"), annotations=str(tmp_path))
    )
    assert index.classes == list(SS2_LABELS)
    assert {k: r.label for k, r in by_id(index, "train").items()} == {"78687": 1, "42326": 0}
    assert _missing(index)["train"] == [str(tmp_path / "videos" / "100.webm")]
    assert [(r.video_id, r.label) for r in index.splits["val"]] == [("5", 2)]
    assert [(r.video_id, r.label) for r in index.splits["test"]] == [("1420", -1)]
    assert by_id(index, "test")["1420"].path == str(tmp_path / "videos" / "1420.webm")
    assert len(index.annotation_checksums) == 4
    train[1]["template"] = "Approaching [something] with a drone"
    put(tmp_path / "something-something-v2-train.json", json.dumps(train))
    with pytest.raises(
        AnnotationError, match=r"train.json: entry 1: class 'Approaching something with a drone'"
    ):
        load_dataset(DatasetConfig(format="ssv2", root=str(tmp_path), check_exists=False))
    put(tmp_path / "something-something-v2-train.json", '[{"id": 1,}')
    with pytest.raises(AnnotationError, match=r"train.json:1: invalid JSON"):
        load_dataset(DatasetConfig(format="ssv2", root=str(tmp_path), check_exists=False))


def test_ssv1_csv_and_frame_folders(tmp_path: Path) -> None:
    cfg = SyntheticConfig(
        classes=2, videos_per_class=4, seed=3, layout="ssv1", min_frames=5, max_frames=7, sizes=((32, 24),)
    )
    videos = generate(cfg, tmp_path)
    frames = tmp_path / "20bn-something-something-v1"
    gone = videos[0].path.split("/")[1]
    for p in (frames / gone).iterdir():
        p.unlink()
    (frames / gone).rmdir()
    index = load_dataset(DatasetConfig(format="ssv1", root=str(frames), annotations=str(tmp_path)))
    assert index.classes == ["Moving something from right to left", "Moving something from left to right"]
    labels = {v.path.split("/")[1]: v.label for v in videos}
    assert sum(len(v) for v in index.splits.values()) == 7
    for split in ("train", "val"):
        for r in index.splits[split]:
            assert (
                r.label == labels[r.video_id] and Path(r.path).is_dir() and r.path == str(frames / r.video_id)
            )
    assert all(r.label == -1 for r in index.splits["test"]) and len(index.splits["test"]) == 2
    assert [m for ms in _missing(index).values() for m in ms] == [str(frames / gone)]
    put(tmp_path / "something-something-v1-validation.csv", "77;Moving something sideways\n")
    with pytest.raises(AnnotationError, match=r"validation.csv:1: label 'Moving something sideways'"):
        load_dataset(DatasetConfig(format="ssv1", root=str(frames), annotations=str(tmp_path)))


# ---------------------------------------------------------------- generic CSV


def test_generic_csv(tmp_path: Path, clip_bytes: bytes) -> None:
    names = [
        "-leading dash.mp4",
        "dots.in.the.name.v2.mp4",
        "space & amp #hash.mp4",
        "ünïcödé 日本.mp4",
        "a,b.mp4",
    ]
    for n in names:
        put(tmp_path / "videos" / "sub" / n, clip_bytes)
    outside = put(tmp_path / "elsewhere" / "abs.mp4", clip_bytes)
    ann = tmp_path / "ann"
    rows = "".join(f'"sub/{n}",{lab}\n' for n, lab in zip(names, ["cat", "dog", "cat", "dog", "cat"]))
    put(ann / "train.csv", "path,label\n" + rows + f"{outside},dog\nsub/nothing.mp4,cat\n")
    put(tmp_path / "videos" / "-val#1.mp4", clip_bytes)
    put(ann / "validation.csv", '"-val#1.mp4",dog\n')  # no header; split from the file name
    put(tmp_path / "videos" / "held out.mp4", clip_bytes)
    put(ann / "all.csv", "path,label,split\nheld out.mp4,,test\n")
    index = load_dataset(DatasetConfig(format="csv", root=str(tmp_path / "videos"), annotations=str(ann)))
    assert index.classes == ["cat", "dog"]
    train = by_id(index, "train")
    assert {k: r.label for k, r in train.items()} == {f"sub/{n}": i % 2 for i, n in enumerate(names)} | {
        str(outside): 1
    }
    assert train["sub/ünïcödé 日本.mp4"].path == str(tmp_path / "videos" / "sub" / "ünïcödé 日本.mp4")
    assert [(r.video_id, r.label) for r in index.splits["val"]] == [("-val#1.mp4", 1)]
    assert [(r.video_id, r.label) for r in index.splits["test"]] == [("held out.mp4", -1)]
    assert _missing(index)["train"] == [str(tmp_path / "videos" / "sub" / "nothing.mp4")]
    assert set(index.annotation_checksums) == {"train.csv", "validation.csv", "all.csv"}


def test_generic_csv_indices_and_classes_file(tmp_path: Path) -> None:
    put(tmp_path / "train.csv", "a.mp4,2\nb.mp4,0\n")
    index = load_dataset(
        DatasetConfig(
            format="csv", root=str(tmp_path), annotations=str(tmp_path / "train.csv"), check_exists=False
        )
    )
    assert index.classes == ["0", "1", "2"] and [r.label for r in index.splits["train"]] == [2, 0]
    assert _missing(index) == {"train": []}
    put(tmp_path / "train.csv", "a.mp4,2\nb.mp4,jump\n")
    with pytest.raises(AnnotationError, match=r"train.csv:1: labels mix class names and indices"):
        load_dataset(DatasetConfig(format="csv", root=str(tmp_path), annotations=str(tmp_path / "train.csv")))
    put(tmp_path / "classes.txt", "run\njump\nswim\n")
    index = load_dataset(
        DatasetConfig(
            format="csv", root=str(tmp_path), annotations=str(tmp_path / "train.csv"), check_exists=False
        )
    )
    assert index.classes == ["run", "jump", "swim"] and [r.label for r in index.splits["train"]] == [2, 1]
    assert "classes.txt" in index.annotation_checksums
    put(tmp_path / "train.csv", "a.mp4,2\nb.mp4,fly\n")
    with pytest.raises(AnnotationError, match=r"train.csv:2: label 'fly' is not a class"):
        load_dataset(DatasetConfig(format="csv", root=str(tmp_path), annotations=str(tmp_path / "train.csv")))
    put(tmp_path / "train.csv", "a.mp4,1,train,extra\n")
    with pytest.raises(AnnotationError, match=r"train.csv:1: expected 'path,label\[,split\]'"):
        load_dataset(DatasetConfig(format="csv", root=str(tmp_path), annotations=str(tmp_path / "train.csv")))
    put(tmp_path / "train.csv", "a.mp4,1\na.mp4,2\n")
    with pytest.raises(AnnotationError, match=r"train.csv:2: video 'a.mp4' already listed"):
        load_dataset(DatasetConfig(format="csv", root=str(tmp_path), annotations=str(tmp_path / "train.csv")))
