"""`make quickstart` as a new user runs it, and the trainings it tracks: the session's one shared run
(tests/fixtures_train.py ``quickstart_run``), read by every test of this file. One file, so that pytest-xdist
(``--dist loadfile``, tests/tiers.py) hands them all to one worker and the run happens once.

The quickstart: every stage leaves its output, the table is built from the evaluation results, and a second
run reuses every stage. Its trainings: TDN and TSN trained by Ray Train (2 DDP workers over gloo) with the tiny
synthetic recipe (jobs/configs/synthetic_tiny.yaml: ResNet-18 at width 0.25, 56 px, 4 segments), tracked on a
real MLflow server. The dataset's four classes differ only in motion (pan left / right, zoom in / out), so a
frame-level model (TSN) cannot beat chance while TDN can. Faults during training (killed ranks, MLflow
outages, SIGTERM and the resumed run's weights) are tests/test_fault_matrix.py's, on the two-node test cluster.
"""

from __future__ import annotations

import getpass
import json
import re
from pathlib import Path

import pytest
import torch

from pipeline.loading.shard_reading import read_index
from tdn.tracking.mlflow_store import tracking_client
from tdn.tracking.registry import load_registered_model
from tests.fixtures_train import QuickstartRun, run_quickstart

pytestmark = pytest.mark.integration

ALIAS = "quickstart"  # jobs/quickstart.py registers quickstart-<variant> under this alias


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


def final_metrics(run: QuickstartRun, variant: str) -> dict:
    """The last epoch's metrics of the quickstart's training of ``variant`` (its stage marker file)."""
    return json.loads((run.workdir / f"train-{variant}.json").read_text())["metrics"]


def test_tdn_learns_motion_and_beats_tsn(quickstart_run: QuickstartRun) -> None:
    tdn, tsn = final_metrics(quickstart_run, "tdn"), final_metrics(quickstart_run, "tsn")
    print(
        f"\nsynthetic motion, 4 classes (chance 0.25), same recipe and budget: "
        f"TDN val top-1 {tdn['val/top1_pct']:.1f}% (train loss {tdn['train/epoch_loss']:.3f}), "
        f"TSN val top-1 {tsn['val/top1_pct']:.1f}% (train loss {tsn['train/epoch_loss']:.3f})"
    )
    assert tdn["epoch"] == tsn["epoch"] == 14  # the recipe's budget, the same for both
    assert tdn["val/top1_pct"] >= 50.0, "TDN should end far above chance (25%)"
    assert tdn["val/top1_pct"] >= tsn["val/top1_pct"] + 10.0
    assert tsn["val/top1_pct"] <= 45.0, "frames alone carry no class information in this dataset"
    assert tdn["best/val_top1_pct"] >= tdn["val/top1_pct"]


def test_mlflow_receives_params_metrics_artifacts_and_model(quickstart_run: QuickstartRun) -> None:
    uri, name = quickstart_run.tracking_uri, "quickstart-tdn"
    client = tracking_client(uri)
    version = client.get_model_version_by_alias(name, ALIAS)
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    shards = quickstart_run.workdir / "shards"
    assert params["model.variant"] == "tdn" and params["optim.lr"] == "0.03"
    assert params["data.shards"] == str(shards) and params["loader.input_size"] == "56"
    epochs, num_classes = int(params["optim.epochs"]), int(params["model.num_classes"])
    index = read_index(str(shards / "train"))
    assert index.num_videos == 104  # 40 videos per class, UCF101 split 1's training groups
    assert run.data.tags["tdn.train_index_checksum"] == index.checksum
    assert "tdn.git_commit" in run.data.tags
    # lineage (issue 15): both splits as dataset inputs, the source tags taken on the driver
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["training", "validation"]
    train_input, val_input = inputs["training"], inputs["validation"]
    assert (train_input.name, train_input.digest) == (f"{index.dataset}/train", index.checksum[:36])
    assert json.loads(inputs["training"].source) == {"uri": str(shards / "train")}
    val = read_index(str(shards / "test"))
    assert (val_input.name, val_input.digest) == (f"{val.dataset}/{val.split}", val.checksum[:36])
    assert run.data.tags["mlflow.user"] == getpass.getuser()
    assert run.data.tags["mlflow.source.git.commit"] == run.data.tags["tdn.git_commit"].removesuffix("-dirty")
    # one metric namespace (issue 15), train and val of a quantity in one chart section (issue 25): loss/,
    # top1_pct/, top5_pct/, train/ (lr, speed), system/; percentages, no counters
    run_id = run.info.run_id
    sections = {key.split("/", 1)[0] for key in run.data.metrics}
    assert sections == {"loss", "top1_pct", "top5_pct", "train", "system"}, sorted(run.data.metrics)
    val_history = sorted(client.get_metric_history(run_id, "top1_pct/val"), key=lambda m: m.step)
    final = final_metrics(quickstart_run, "tdn")
    assert len(val_history) == epochs
    assert val_history[-1].value == pytest.approx(final["val/top1_pct"])
    assert val_history[-1].step == final["step"]  # x-axis: the global step
    for key in (
        "loss/train_step",
        "train/lr",
        "train/samples_per_s",
        "train/data_wait_pct",
        "top5_pct/val",
        "loss/train",
        "top1_pct/train",
        "train/epoch_time_s",
        "loss/val",
    ):
        assert client.get_metric_history(run_id, key), key
    assert run.data.tags["tdn.val_samples"] == str(val.num_samples)
    # best and last: top1_pct/val_best each time a new best appeared; the best is registered
    best = client.get_metric_history(run_id, "top1_pct/val_best")
    val_curve = [m.value for m in val_history]
    new_bests = [v for i, v in enumerate(val_curve) if v >= max(val_curve[:i], default=-1.0)]  # ties too
    assert [m.value for m in sorted(best, key=lambda m: m.step)] == pytest.approx(new_bests)
    best_step = max(best, key=lambda m: m.step).step
    # system metrics of the node, sampled every tracking.system_metrics_interval_s (10 s)
    system = [key for key in run.data.metrics if key.startswith("system/")]
    assert any(key.endswith("/cpu_utilization_percentage") for key in system), system
    assert any(key.endswith("/system_memory_usage_megabytes") for key in system), system
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "per_class_accuracy.csv", "checkpoint", "metrics.csv", "curves.png"} <= artifacts
    csv = Path(client.download_artifacts(run_id, "per_class_accuracy.csv")).read_text().splitlines()
    assert csv[0] == "class_index,class_name,samples,top1_pct,top5_pct"
    assert len(csv) == 1 + num_classes
    history = Path(client.download_artifacts(run_id, "metrics.csv")).read_text().splitlines()
    assert len(history) == 1 + epochs
    assert float(version.tags["val_top1_pct"]) == pytest.approx(max(val_curve), abs=1e-3)
    # pages that explain themselves (issue 25): the run says what it trained on what, with which recipe; the
    # version and the registered model say the input layout, the classes and how to load them
    about = run.data.tags["mlflow.note.content"]
    assert f"**{index.dataset}/train** ({index.num_videos} videos" in about, about
    assert f"SGD lr {float(params['optim.lr']):g}" in about and f"`{name}`" in about, about
    layout = f"`(N, {params['model.num_segments']}, 5, 3, 56, 56)`"
    assert layout in version.description and f"training run `{run_id}`" in version.description
    assert all(name in version.description for name in index.classes), version.description
    assert f"models:/{name}/{version.version}" in version.description
    registered = client.get_registered_model(name).description
    assert layout in registered and f"models:/{name}@<alias>" in registered

    model, ckpt = load_registered_model(f"models:/{name}@{ALIAS}", uri)
    assert ckpt["step"] == best_step and ckpt["best"]["score"] == pytest.approx(max(val_curve))
    # Ray kept the best (checkpoint.keep=1) and the last, in folders named by epoch
    run_dir = Path(
        json.loads((quickstart_run.workdir / "train-tdn.json").read_text())["checkpoint"]
    ).parent.parent
    kept = sorted(p.name for p in run_dir.iterdir() if p.name.startswith("epoch_"))
    assert kept == sorted({f"epoch_{ckpt['epoch']:04d}", f"epoch_{epochs:04d}"})
    stored_best = torch.load(run_dir / f"epoch_{ckpt['epoch']:04d}" / "checkpoint.pt", weights_only=True)
    for key, value in stored_best["model"].items():
        assert torch.equal(model.state_dict()[key], value), key
