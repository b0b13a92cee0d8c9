"""Evaluation at the model's own input size: a checkpoint trained on 48 px crops (eval short side 56) is
evaluated at 48 / 56 unless sizes are given; sizes given that differ are used, warned about and recorded in
the results, the MLflow run and the tables. Before, every model was evaluated at the protocol's 224 / 256."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import config_to_dict
from pipeline.errors import InputError
from pipeline.loading.config import LoaderConfig
from pipeline.synthetic.frame_shards import SplitLayout, render_videos, write_split
from tdn.checkpoints.project import TrainingState, save_checkpoint
from tdn.evaluation.batch_inference import evaluate
from tdn.evaluation.model_source import ModelSource
from tdn.evaluation.protocol import EvalConfig, TrainedSizes, resolve_protocol
from tdn.evaluation.replica_pool import loader_config
from tdn.evaluation.split import read_split
from tdn.model.networks import ModelConfig, build_model_from_config
from tdn.training.config import TrainConfig
from tests.eval_shards import register_checkpoint_version

CLASSES = ["MoveLeft", "MoveRight", "MoveUp"]
TINY = ModelConfig(arch="resnet18", num_classes=3, num_segments=4, width=0.25, dropout=0.0)


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    videos = render_videos(3, 1, frames=16)
    return write_split(
        tmp_path_factory.mktemp("sizes"), videos, CLASSES, SplitLayout(num_segments=4, num_shards=1)
    )


@pytest.fixture(scope="module")
def trained_48(tmp_path_factory) -> tuple[str, torch.nn.Module]:
    """A project checkpoint whose training config says: crops of 48, eval short side 56."""
    torch.manual_seed(0)
    model = build_model_from_config(TINY).eval()
    train = TrainConfig(model=TINY, loader=LoaderConfig(input_size=48, eval_short_side=56))
    path = str(tmp_path_factory.mktemp("ckpt") / "trained48.pt")
    save_checkpoint(path, model, TINY, CLASSES, TrainingState(train_config=config_to_dict(train)))
    return path, model


def _scores_at(model: torch.nn.Module, split: Path, size: int, short: int) -> dict[str, np.ndarray]:
    from pipeline.loading.eval_loader import eval_batches

    given = EvalConfig(input_size=size, short_side=short)
    cfg = loader_config(given, resolve_protocol(given, read_split(str(split)), TrainedSizes()), "cpu")
    out = {}
    with torch.inference_mode():
        for b in eval_batches(str(split), cfg, 8):
            assert b.x.shape[-1] == size
            out.update(zip(b.video_ids, torch.softmax(model(b.x), 1).numpy()))
    return out


def test_evaluated_at_the_checkpoints_size(split, trained_48, tmp_path):
    path, model = trained_48
    out = evaluate(
        ModelSource(uri=path), str(split), EvalConfig(engine="local"), tmp_path / "o", log_to_mlflow=False
    )
    r = out.result
    assert (r.input_size, r.short_side, r.sizes_from) == (48, 56, "checkpoint")
    assert (r.trained_input_size, r.trained_short_side, r.size_mismatch) == (48, 56, "")
    ref = _scores_at(model, split, 48, 56)
    for vid, row in zip(out.video.video_ids, out.video.scores):
        np.testing.assert_allclose(row, ref[vid], atol=1e-5)


def test_views_the_network_cannot_take_end_in_one_line_before_scoring(split, trained_48, tmp_path):
    """32 px views: the TDN's last stage would have one cell, which its L-TDM halves; one InputError naming
    the model and the size, and no result file (tdn/model/networks.py ``too_small_for``)."""
    path, _ = trained_48
    with pytest.raises(InputError, match=r"views of 32 px are too small for this model: ") as info:
        evaluate(
            ModelSource(uri=path),
            str(split),
            EvalConfig(engine="local", input_size=32),
            tmp_path / "o",
            log_to_mlflow=False,
        )
    assert path in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "o" / "results.json").exists()


def test_a_size_mismatch_is_printed_and_recorded(split, trained_48, tmp_path, caplog):
    """Given sizes win, and the mismatch is in the log, results.json, the MLflow run and the tables."""
    from tdn.evaluation.table_runs import load_evaluations
    from tdn.evaluation.tables import build_tables
    from tdn.tracking.mlflow_store import tracking_client

    path, _ = trained_48
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    own = evaluate(ModelSource(uri=path), str(split), EvalConfig(engine="local"), tmp_path / "own", uri)
    with caplog.at_level(logging.WARNING, logger="tdn.evaluation.batch_inference"):
        other = evaluate(
            ModelSource(uri=path),
            str(split),
            EvalConfig(engine="local", input_size=40),
            tmp_path / "other",
            uri,
        )
    r = other.result
    assert (r.input_size, r.short_side, r.sizes_from, r.trained_input_size) == (40, 56, "user", 48)
    assert "trained at input size 48" in r.size_mismatch
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert any(r.size_mismatch in w for w in warnings), warnings
    assert json.loads((tmp_path / "other" / "results.json").read_text())["size_mismatch"] == r.size_mismatch
    params = tracking_client(uri).get_run(other.run_id).data.params
    assert params["size_mismatch"] == r.size_mismatch and params["trained_input_size"] == "48"
    assert params["input_size"] == "40" and params["sizes_from"] == "user"
    assert tracking_client(uri).get_run(own.run_id).data.params["sizes_from"] == "checkpoint"

    table = next(t for t in build_tables(load_evaluations(uri)) if t.name.endswith("_synthetic"))
    column = table.columns.index("Input")
    assert sorted(row[column] for row in table.rows) == ["40 (trained 48)", "48"]
    timing = next(t for t in build_tables(load_evaluations(uri)) if t.name == "table5_timing")
    assert sorted(row[timing.columns.index("Input")] for row in timing.rows) == ["40 (trained 48)", "48"]


def test_reevaluation_uses_each_versions_own_size(split, trained_48, tmp_path):
    """A registered version trained at 48 px is re-evaluated at 48 px, once."""
    from tdn.evaluation.reevaluate import ReevaluateConfig, reevaluate_once
    from tdn.tracking.mlflow_store import tracking_client

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    version, _ = register_checkpoint_version(uri, trained_48[0], "sized")
    cfg = ReevaluateConfig(
        shards=str(split),
        models=["sized"],
        tracking_uri=uri,
        out=str(tmp_path / "out"),
        tables_out=str(tmp_path / "tables"),
        with_paper=False,
        eval=EvalConfig(engine="local"),
    )
    first = reevaluate_once(cfg)
    assert list(first.evaluated) == [f"models:/sized/{version}"], first
    params = tracking_client(uri).get_run(first.evaluated[f"models:/sized/{version}"]).data.params
    assert (params["input_size"], params["short_side"], params["sizes_from"]) == ("48", "56", "checkpoint")
    again = reevaluate_once(cfg)
    assert again.evaluated == {} and again.skipped == [f"models:/sized/{version}"]
