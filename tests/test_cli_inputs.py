"""One-line errors for inputs that cannot work (issue 14, item 8): exit 2 and one stderr line naming the problem,
never exit 0 with "found 0" or a split quietly "skipped"."""

from __future__ import annotations

from pathlib import Path

from jobs.shard import main as shard_main


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def test_dry_run_on_a_dataset_root_that_does_not_exist(tmp_path, capsys):
    (tmp_path / "list.csv").write_text("path,label,split\na.mp4,x,train\n")
    root = tmp_path / "no-such-root"
    code = shard_main(
        [
            "--dataset.format",
            "csv",
            "--dataset.root",
            str(root),
            "--dataset.annotations",
            str(tmp_path / "list.csv"),
            "--output",
            str(tmp_path / "out"),
            "--dry-run",
        ]
    )
    assert code == 2
    assert str(root) in one_error_line(capsys)


def test_a_split_the_dataset_does_not_have(synthetic_ucf101: Path, tmp_path, capsys):
    code = shard_main(
        [
            "--dataset.format",
            "ucf101",
            "--dataset.root",
            str(synthetic_ucf101),
            "--splits",
            "[val]",
            "--output",
            str(tmp_path / "out"),
            "--dry-run",
        ]
    )
    assert code == 2
    line = one_error_line(capsys)
    assert "no split val" in line and "train" in line


LEGACY_TEST_SPLIT = Path(__file__).parent / "data" / "legacy_shards" / "test"


def evaluate_exit(tmp_path: Path, model: str, shards: str = str(LEGACY_TEST_SPLIT)) -> int:
    from jobs.evaluate import main as evaluate_main

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return evaluate_main(
        ["--model", model, "--shards", shards, "--tracking-uri", store, "--out", str(tmp_path / "eval")]
    )


def test_a_model_file_that_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "no-such-model.pt"
    assert evaluate_exit(tmp_path, str(missing)) == 2
    assert str(missing) in one_error_line(capsys)


def test_a_garbage_checkpoint(tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint\n" * 10)
    assert evaluate_exit(tmp_path, str(garbage)) == 2
    assert str(garbage) in one_error_line(capsys)


def test_a_registered_model_that_does_not_exist(tmp_path, capsys):
    from tdn.tracking.mlflow_store import tracking_client

    tracking_client(
        f"sqlite:///{tmp_path / 'mlflow.db'}"
    ).search_experiments()  # MLflow logs creating its tables
    capsys.readouterr()
    assert evaluate_exit(tmp_path, "models:/no-such-model@champion") == 2
    line = one_error_line(capsys)
    assert "models:/no-such-model@champion" in line and "not found" in line


def test_an_unreachable_s3_endpoint(tmp_path, capsys, monkeypatch):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    assert evaluate_exit(tmp_path, str(tmp_path / "model.pt"), shards="s3://bucket/shards/test") == 2
    line = one_error_line(capsys)
    assert f"127.0.0.1:{port}" in line and "cannot be reached" in line


LEGACY = LEGACY_TEST_SPLIT.parent  # the shard job's output folder: train/ and test/


def test_a_shard_location_in_either_form_and_a_hint_naming_the_other(tmp_path, capsys):
    """evaluate and train take a split folder, or its parent plus --split (issue 25); the wrong one names the
    splits that are there and the other form, in one line, before Ray or a model is touched."""
    from pipeline.shards.location import split_folder
    from tdn.training.config import TrainConfig
    from tdn.training.preflight import locate_shards

    assert split_folder(str(LEGACY), "test") == str(LEGACY_TEST_SPLIT) == split_folder(str(LEGACY_TEST_SPLIT))
    data = TrainConfig().data
    for shards in (str(LEGACY), str(LEGACY / "train")):
        cfg = locate_shards(TrainConfig(data=type(data)(shards=shards, val_split="test")))
        assert (cfg.data.shards, cfg.data.train_split, cfg.data.val_split) == (str(LEGACY), "train", "test")

    assert evaluate_exit(tmp_path, str(tmp_path / "unused.pt"), shards=str(LEGACY)) == 2
    line = one_error_line(capsys)
    assert f"{LEGACY}: no shard index; {LEGACY} holds the splits test, train: give --split test" in line, line
    assert f"or the split folder {LEGACY_TEST_SPLIT}" in line, line
    from jobs.evaluate import main as evaluate_main

    argv = ["--model", str(tmp_path / "unused.pt"), "--shards", str(LEGACY_TEST_SPLIT), "--split", "test"]
    assert evaluate_main([*argv, "--tracking-uri", "none"]) == 2
    line = one_error_line(capsys)
    assert f"{LEGACY_TEST_SPLIT} is itself a split folder (it holds index.json): drop --split test" in line, (
        line
    )

    from jobs.train import main as train_main

    base = ["--tracking-uri", "none", "--run.storage_path", str(tmp_path / "ray")]
    assert train_main([*base, "--shards", str(LEGACY), "--split", "nope", "--data.val_split", "test"]) == 2
    line = one_error_line(capsys)
    assert f"{LEGACY}/nope: no shard index; {LEGACY} holds the splits test, train: give --split test" in line


def test_evaluate_without_tracking_from_the_parent_folder(ray_cluster, tmp_path, capsys, monkeypatch):
    """--shards PARENT --split test --tracking-uri none: evaluated, results written, no MLflow store made."""
    from jobs.evaluate import main as evaluate_main
    from tests.eval_shards import save_tiny_checkpoint

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt", 2, ["MoveLeft", "MoveRight"], num_segments=4)
    sizes = ["--eval.input_size", "56", "--eval.short_side", "64", "--eval.engine", "local"]
    argv = [
        "--model",
        str(ckpt),
        "--shards",
        str(LEGACY),
        "--split",
        "test",
        "--tracking-uri",
        "none",
        *sizes,
    ]
    assert evaluate_main([*argv, "--eval.device", "cpu", "--out", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "MLflow run none (--tracking-uri none)" in " ".join(out.split()), out
    assert (tmp_path / "eval" / "results.json").is_file() and not (tmp_path / "mlruns").exists()
