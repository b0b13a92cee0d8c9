"""Predict on videos the project encodes (several codecs, one corrupt file): the stdout table, every output
format with its error rows, --features, recipe overrides, Grad-CAM files for every variant, the SOURCE forms
(folders, globs, lists, s3://)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from jobs.predict import main as predict_main
from pipeline.errors import InputError
from pipeline.loading.raw_views import ViewSettings, read_views
from pipeline.loading.transforms import normalise_uint8
from pipeline.shards.sampling import CentreSampler
from tdn.evaluation.model_source import ModelSource
from tdn.model.networks import ModelConfig, build_model_from_config
from tdn.prediction.config import PredictConfig
from tdn.prediction.output import read_rows
from tdn.prediction.run import predict
from tdn.prediction.sources import list_sources
from tdn.reporting.figures import png_size
from tests.predict_models import CLASSES, SHORT, SIZE, T, tiny_checkpoint
from tests.video_zoo import GOOD, make_zoo

CODECS = ("h264", "mpeg4", "vp9", "hevc", "av1")


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Five codecs and one corrupt file (random bytes named .avi) in a folder tree."""
    root = tmp_path_factory.mktemp("predict_videos")
    good, bad = make_zoo(root / "zoo")
    (root / "clips" / "sub").mkdir(parents=True)
    for i, case in enumerate(CODECS):
        shutil.copy(good[case], (root / "clips" / ("sub" if i % 2 else "")) / GOOD[case][0])
    shutil.copy(bad["garbage"], root / "clips" / "corrupt.avi")
    return root / "clips"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return tiny_checkpoint(tmp_path_factory.mktemp("predict_ckpt") / "tiny.pt")


def _config(sources: list[str], ckpt: str, **fields) -> PredictConfig:
    return PredictConfig(sources=sources, model=ModelSource(uri=ckpt), engine="local", **fields)


def test_table_on_stdout_with_the_error_row(videos, checkpoint, capsys):
    assert predict_main([str(videos), "--model", checkpoint]) == 0
    out = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(out) if line.startswith("video") and "top-3" in line)
    rows = out[header + 1 : header + 7]
    assert len(rows) == 6, out
    good = [r for r in rows if "error" not in r]
    assert len(good) == len(CODECS)
    for line in good:  # three classes, each "name pp.p%", most probable first
        cells = line.split("  ", 1)[1].strip().split(" | ")
        assert [c.split()[0] in CLASSES for c in cells] == [True] * 3
        pcts = [float(c.split()[1].rstrip("%")) for c in cells]
        assert pcts == sorted(pcts, reverse=True) and abs(sum(pcts) - 100.0) < 0.2
    (bad,) = [r for r in rows if "error" in r]
    assert "corrupt.avi" in bad and "error: open: not a readable media file" in bad
    assert out[-1].startswith("predict: done: 6 videos, 1 failed")


def test_every_output_format_holds_the_same_rows_and_the_error(videos, checkpoint, tmp_path):
    read = {}
    for fmt in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"preds.{fmt}"
        summary = predict(_config([str(videos)], checkpoint, out=str(out), features=True), log=lambda _: None)
        assert summary.failed == 1 and summary.videos == 6
        read[fmt] = {r["video"]: r for r in read_rows(out.read_bytes(), fmt)}  # type: ignore[arg-type]
    assert read["csv"].keys() == read["jsonl"].keys() == read["parquet"].keys()
    for video, row in read["jsonl"].items():
        for other in (read["csv"][video], read["parquet"][video]):
            assert str(other["error"] or "") == row["error"] and str(other["label_1"] or "") == str(
                row["label_1"] or ""
            )
        if video.endswith("corrupt.avi"):
            assert row["error"].startswith("open: ") and row["label_1"] is None and row["features"] is None
            assert read["csv"][video]["label_1"] == "" and read["parquet"][video]["prob_1"] is None
            continue
        probs = [row[f"prob_{i}"] for i in (1, 2, 3)]
        assert row["error"] == "" and probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-6
        assert abs(float(read["csv"][video]["prob_1"]) - probs[0]) < 1e-5
        assert abs(read["parquet"][video]["prob_1"] - probs[0]) < 1e-6
        assert row["model"] == checkpoint and row["protocol"] == "ssv1x1" and row["views"] == 1
        assert (row["input_size"], row["short_side"], row["overrides"]) == (SIZE, SHORT, "")
        assert json.loads(read["csv"][video]["features"]) == pytest.approx(row["features"], abs=1e-5)
        assert read["parquet"][video]["features"] == pytest.approx(row["features"], abs=1e-6)


def test_features_are_the_pooled_clip_embedding(videos, checkpoint, tmp_path):
    """--features = the classifier's input averaged over segments: computed here from model.features."""
    out = tmp_path / "f.jsonl"
    predict(
        _config([str(videos / GOOD["h264"][0])], checkpoint, out=str(out), features=True), log=lambda _: None
    )
    (row,) = read_rows(out.read_bytes(), "jsonl")
    model = build_model_from_config(
        ModelConfig(arch="resnet18", num_classes=3, num_segments=T, width=0.25, dropout=0.0)
    )
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    model.eval()
    views = read_views(str(videos / GOOD["h264"][0]), row["video"], ViewSettings(T, 1, 1, SIZE, SHORT))
    x = normalise_uint8(views.x.permute(0, 1, 2, 5, 3, 4))
    with torch.no_grad():
        pooled = model.features(x).mean(dim=(2, 3)).view(1, T, -1).mean(dim=1)[0]
        logits = model(x)[0]
    assert len(row["features"]) == model.feature_dim == 128
    np.testing.assert_allclose(row["features"], pooled.numpy(), rtol=1e-4, atol=1e-5)
    assert row["label_1"] == CLASSES[int(logits.argmax())]


def test_a_flag_that_overrides_the_recipe_is_printed_and_recorded(videos, checkpoint, tmp_path):
    lines: list[str] = []
    out = tmp_path / "o.csv"
    predict(
        _config([str(videos / GOOD["vp9"][0])], checkpoint, out=str(out), input_size=48), log=lines.append
    )
    assert any("note: input_size 48 (recipe 40) overrides the model's recipe" in line for line in lines), (
        lines
    )
    assert any("crop 40 of short side 48" in line for line in lines)
    (row,) = read_rows(out.read_bytes(), "csv")
    assert (row["input_size"], row["overrides"]) == ("48", "input_size 48 (recipe 40)")


@pytest.mark.parametrize("variant", ["tdn", "tsn", "tconv", "stdm", "ltdm"])
def test_explain_writes_a_map_per_segment_for_every_variant(videos, tmp_path, variant):
    ckpt = tiny_checkpoint(tmp_path / f"{variant}.pt", variant)
    video = videos / "sub" / GOOD["mpeg4"][0]
    layer = "layer4" if variant != "tdn" else "auto"  # auto at 40 px: layer1 (10 x 10; layer4 is 2 x 2)
    cams = str(tmp_path / "cams")
    cfg = _config([str(video)], ckpt, explain=cams, explain_class="beta", explain_layer=layer)
    summary = predict(cfg, log=lambda _: None)
    assert summary.failed == 0
    (folder,) = list((tmp_path / "cams").iterdir())
    cam = np.load(folder / "cam.npy", allow_pickle=False)
    assert cam.shape == (T, SIZE, SIZE) and cam.dtype == np.float32 and cam.min() >= 0 and cam.max() == 1.0
    meta = json.loads((folder / "cam.json").read_text())
    windows = CentreSampler(T).sample(24, np.random.default_rng(0))[0].frame_indices  # the zoo's 24 frames
    assert meta["frame_indices"] == [w[2] for w in windows]
    assert (meta["class_name"], meta["class_index"], meta["layer"], meta["cam_shape"]) == (
        "beta",
        1,
        "layer1" if layer == "auto" else layer,
        [T, SIZE, SIZE],
    )
    assert meta["video"] == str(video) and meta["source_size"] == [64, 48] and 0 < meta["probability"] < 1
    left, top, right, bottom = meta["crop_box"]  # a centre crop of 40/48 of the 48-line frame
    assert (top, bottom) == pytest.approx((4.0, 44.0)) and right - left == pytest.approx(40.0)
    assert png_size((folder / "cam.png").read_bytes())[0] > 4 * 100


def test_sources_folders_globs_lists_and_missing(videos, tmp_path):
    found = [v.video for v in list_sources([str(videos)])]
    assert len(found) == 6 and any("/sub/" in v for v in found)  # recursive
    top_mp4 = [str(videos / GOOD[c][0]) for c in ("av1", "h264")]  # sorted; the sub-folder's not matched
    assert [v.video for v in list_sources([str(videos / "*.mp4")])] == top_mp4
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my videos\n{videos / GOOD['h264'][0]}\n\nnot-there.mp4\n")
    listed = [v.video for v in list_sources([str(listing), str(videos / GOOD["h264"][0])])]
    assert listed == [str(videos / GOOD["h264"][0]), str(tmp_path / "not-there.mp4")]  # each once
    shard_csv = tmp_path / "train.csv"  # the shard job's CSV is a list too: its path column
    shard_csv.write_text(f"path,label\n{videos / 'sub' / GOOD['vp9'][0]},beta\n")
    assert [v.video for v in list_sources([str(shard_csv)])] == [str(videos / "sub" / GOOD["vp9"][0])]
    with pytest.raises(InputError, match="no such file, folder or s3:// prefix"):
        list_sources([str(tmp_path / "nope")])
    with pytest.raises(InputError, match="no video files"):
        list_sources([str(tmp_path / "*.mkv")])


def test_missing_listed_video_is_an_error_row(videos, checkpoint, tmp_path):
    listing = tmp_path / "l.txt"
    listing.write_text(f"{videos / 'sub' / GOOD['hevc'][0]}\ngone.mp4\n")
    summary = predict(_config([str(listing)], checkpoint), log=lambda _: None)
    errors = {r.video.rsplit("/", 1)[-1]: r.error for r in summary.rows}
    assert errors["gone.mp4"].startswith("missing: file not found") and errors[GOOD["hevc"][0]] == ""


def test_s3_prefix_in_and_s3_output(videos, checkpoint, s3_server):
    from pipeline import storage

    bucket = s3_server.create_bucket("predict-in")
    for case in ("h264", "vp9"):
        path = next(videos.rglob(GOOD[case][0]))
        storage.write_bytes_atomic(f"{bucket}/new/{GOOD[case][0]}", path.read_bytes())
    out = f"{bucket}/preds/new.csv"
    summary = predict(_config([f"{bucket}/new/"], checkpoint, out=out), log=lambda _: None)
    assert summary.failed == 0
    rows = read_rows(storage.read_bytes(out), "csv")
    assert sorted(r["video"] for r in rows) == sorted(f"{bucket}/new/{GOOD[c][0]}" for c in ("h264", "vp9"))
    assert all(r["label_1"] in CLASSES for r in rows)


def test_bad_input_is_one_line_exit_2(tmp_path, checkpoint, capsys):
    assert predict_main([str(tmp_path / "nothing"), "--model", checkpoint]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"predict: error: {tmp_path / 'nothing'}: no such file, folder or s3:// prefix"]
    assert predict_main([str(tmp_path), "--model", checkpoint, "--out", "x.txt"]) == 2
    assert "must end in .csv, .jsonl or .parquet" in capsys.readouterr().err
    video = str(next(Path(__file__).parent.glob("*.py")))  # any file: the size check comes first
    assert predict_main([video, "--model", checkpoint, "--input-size", "32"]) == 2
    assert "predict: error: views of 32 px are too small for this model" in capsys.readouterr().err


def test_help_names_the_sources_and_the_recipe(capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict_main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "SOURCE" in text and "--explain" in text and "--features" in text and "recipe" in text
    assert io.StringIO(text).readline().startswith("usage: ")
    assert "$ python -m jobs.predict myvideos/ --model models:/quickstart-tdn@quickstart" in text
    assert "myvideos/broken.mp4     error: open: not a readable media file" in text  # the real run's table
