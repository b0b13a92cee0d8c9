"""Scheduled re-evaluation against a real MLflow server: only versions without a result are evaluated."""

from __future__ import annotations

import json

import pytest

from pipeline.synthetic.frame_shards import SplitLayout, render_videos, write_split
from tdn.evaluation.protocol import EvalConfig
from tdn.evaluation.reevaluate import ReevaluateConfig, parse_interval, reevaluate_loop, reevaluate_once
from tests.eval_shards import register_checkpoint_version, save_tiny_checkpoint

CLASSES = ["MoveLeft", "MoveRight", "MoveUp"]


def test_parse_interval():
    assert parse_interval("6h") == 6 * 3600
    assert parse_interval("30m") == 1800
    assert parse_interval("1.5d") == 1.5 * 86400
    for bad in ("6", "h", "-1h", "0s", "6 hours"):
        with pytest.raises(ValueError, match="interval"):
            parse_interval(bad)


@pytest.mark.integration
def test_reevaluate_only_what_is_missing(mlflow_server, tmp_path, capsys):
    uri = mlflow_server.uri
    split = write_split(
        tmp_path / "shards", render_videos(3, 1, frames=16), CLASSES, SplitLayout(num_segments=4)
    )
    name = "reeval-tiny"
    v1, _ = register_checkpoint_version(uri, save_tiny_checkpoint(tmp_path / "a.pt", 3, CLASSES, "tdn"), name)
    v2, _ = register_checkpoint_version(
        uri, save_tiny_checkpoint(tmp_path / "b.pt", 3, CLASSES, "tsn", seed=1), name, alias="champion"
    )
    # a version trained for other classes: reported as failed, the others still run
    bad, _ = register_checkpoint_version(
        uri, save_tiny_checkpoint(tmp_path / "c.pt", 5, list("abcde")), "reeval-bad"
    )

    eval_cfg = EvalConfig(input_size=64, short_side=64, engine="local")
    base = dict(
        shards=str(split),
        tracking_uri=uri,
        out=str(tmp_path / "out"),
        tables_out=str(tmp_path / "tables"),
        eval=eval_cfg,
    )

    first = reevaluate_once(ReevaluateConfig(models=[name], alias="champion", **base))
    assert list(first.evaluated) == [f"models:/{name}/{v2}"] and not first.skipped and first.tables_run_id

    second = reevaluate_once(ReevaluateConfig(models=[name, "reeval-bad"], **base))
    assert list(second.evaluated) == [f"models:/{name}/{v1}"]
    assert second.skipped == [f"models:/{name}/{v2}"]
    assert (
        list(second.failed) == [f"models:/reeval-bad/{bad}"]
        and "classes" in second.failed[f"models:/reeval-bad/{bad}"]
    )
    table = (tmp_path / "tables" / "tables.md").read_text()
    assert f"{name} v{v1}" in table and f"{name} v{v2}" in table
    # each version's evaluation run names its version (issue 25): told apart in the runs list
    from tdn.tracking.mlflow_store import tracking_client

    names = {v: tracking_client(uri).get_run(run_id).info.run_name for v, run_id in second.evaluated.items()}
    names.update(
        {v: tracking_client(uri).get_run(run_id).info.run_name for v, run_id in first.evaluated.items()}
    )
    assert names == {f"models:/{name}/{v}": f"eval-{name}-v{v}-synthetic-val" for v in (v1, v2)}, names

    # nothing new: the CLI evaluates nothing and logs no tables run
    from jobs.reevaluate import main

    rc = main(
        [
            "--shards",
            str(split),
            "--tracking-uri",
            uri,
            "--models",
            name,
            "--eval.engine",
            "local",
            "--eval.input_size",
            "64",
            "--eval.short_side",
            "64",
            "--out",
            str(tmp_path / "out"),
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (
        rc == 0
        and report["evaluated"] == {}
        and sorted(report["skipped"]) == sorted([f"models:/{name}/{v1}", f"models:/{name}/{v2}"])
        and report["tables_run_id"] == ""
    )

    # new shards (different checksum): every version is due again; the loop runs passes on its schedule
    split2 = write_split(
        tmp_path / "shards2", render_videos(3, 1, frames=18, seed=7), CLASSES, SplitLayout(num_segments=4)
    )
    reports, sleeps = [], []
    loop_cfg = ReevaluateConfig(
        **{**base, "shards": str(split2)}, models=[name], alias="champion", every="2h"
    )
    reevaluate_loop(loop_cfg, on_report=reports.append, sleep=sleeps.append, max_passes=2)
    assert [len(r.evaluated) for r in reports] == [1, 0] and len(sleeps) == 1 and 7000 < sleeps[0] <= 7200
    assert reports[0].index_checksum != first.index_checksum
