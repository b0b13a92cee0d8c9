"""`make quickstart` as a new user runs it (the session's shared run, tests/fixtures_train.py): every stage
leaves its output, the table is built from the evaluation results, and TDN beats TSN on the motion-only
dataset. A second run reuses every stage."""

from __future__ import annotations

import json
import re

import pytest

from pipeline.loading.shard_reading import read_index
from tests.fixtures_train import QuickstartRun, run_quickstart

pytestmark = pytest.mark.integration


def test_quickstart_end_to_end(quickstart_run: QuickstartRun) -> None:
    work, out = quickstart_run.workdir, quickstart_run.output
    print(out[-4000:])

    # Every stage announced itself and left its output behind.
    for n in range(1, 7):
        assert f"[{n}/6]" in out

    # A quiet console: the project's progress lines carry ETAs; Ray's per-report echoes (each epoch's metrics
    # again per worker) and its known-harmless error-level line are off (--verbose shows them).
    assert re.search(r"ETA epoch \d+:\d\d run (\d+:)?\d+:\d\d", out), out[-4000:]
    for noise in ("Reporting training result", "Checkpoint successfully created", "'PreemptionWatcher'"):
        assert noise not in out, noise
    assert (work / "data" / "ucf101" / "ucfTrainTestlist" / "classInd.txt").is_file()
    for split in ("train", "test"):
        index = read_index(str(work / "shards" / split))
        assert index.num_samples > 0 and index.shards
    results = {v: json.loads((work / "eval" / v / "results.json").read_text()) for v in ("tdn", "tsn")}
    for variant, r in results.items():
        assert r["variant"] == variant
        assert r["num_videos"] > 0 and r["ms_per_video"] > 0
    assert (work / "tables" / "tables.md").is_file()

    # The printed table lists both models with the numbers of their result files.
    table_lines = [line for line in out.splitlines() if line.startswith("| TDN") or line.startswith("| TSN")]
    for variant, r in results.items():
        rows = [line for line in table_lines if line.startswith(f"| {variant.upper()}")]
        assert rows, f"no {variant} row in the printed table"
        assert any(f"{r['top1_pct']:.1f}" in row for row in rows), (rows, r["top1_pct"])

    # The dataset's classes differ only in motion: TDN must beat the appearance-only TSN.
    print({v: (r["top1_pct"], r["top5_pct"]) for v, r in results.items()})
    assert results["tdn"]["top1_pct"] > results["tsn"]["top1_pct"] + 10.0

    # A re-run reuses every finished stage and changes no result.
    again = run_quickstart(quickstart_run.args)
    assert len(re.findall(r"reused", again)) >= 5, again[-3000:]
    rerun = {v: json.loads((work / "eval" / v / "results.json").read_text()) for v in ("tdn", "tsn")}
    assert rerun == results
