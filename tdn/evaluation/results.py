"""One evaluation's numbers with their protocol: files on disk and an MLflow run that tables are built from.

Files written into the evaluation's output folder:
    results.json          one EvalResult row (see below), plus per-class accuracy
    results.csv           the same row as CSV (header + one line)
    per_video_scores.npz  video_ids (V,) str, labels (V,) int64, scores (V, C) float32, num_views (V,) int64
                          (plain arrays: ``np.load(path, allow_pickle=False)`` reads it)
    predictions.csv       video_id, label (name; "" when unlabelled), top1..top5 class names with prob1..prob5
    An unlabelled split (every label -1) gets the four files above, accuracies null (write_unlabelled_outputs).
    per_class.csv         class index, class name, videos, correct, top1_pct (tdn/reporting/per_class.py)
    confusion.png         the (C, C) confusion matrix in counts, rows = true class, legible at 400 classes
    per_class.png         top-1 per class as sorted bars (the worst and best 25 above 50 classes)
    most_confused.csv     the 20 largest off-diagonal cells: true, predicted, count, share of the true class
    report.html           one self-contained page: protocol, headline numbers, both pictures, the tables
                          (the last four: tdn/reporting/html_report.py)

The MLflow run is tagged ``tdn.kind=evaluation`` and carries the row as params (protocol, counts) and the
numbers as metrics ``eval/top1_pct``, ``eval/top5_pct``, ``eval/mean_class_top1_pct``, ``eval/ms_per_video``,
``eval/videos_per_s``, ``eval/gflops_per_view`` (step 0), each with the evaluated split as its dataset and,
for a registered model, the version's MLflow ``model_id`` (the logged model's page lists every evaluation).
The split is the run's dataset input (context "evaluation"), the logged model its model input; tags link it
to the model version (``tdn.model_name`` / ``tdn.model_version`` / ``tdn.model_run_id``), the shard index
checksum (``tdn.index_checksum``) and its source (tdn/tracking/lineage.py); the files are its artifacts.

Accuracies are percentages, named ``*_pct``. Files and runs written before issue 15 named them ``top1`` /
``top5`` / ``mean_class_acc`` (already percentages): ``EvalResult.from_dict`` and ``result_from_run`` read
those too, so old results still build tables.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tdn.evaluation.description import evaluation_description
from tdn.evaluation.metrics import VideoScores, confusion_matrix, per_class_accuracy
from tdn.reporting.html_report import ReportFigure, ReportSummary, write_evaluation_report
from tdn.reporting.per_class import class_accuracies, per_class_csv
from tdn.tracking import mlflow_store
from tdn.tracking.lineage import ShardDataset, source_tags
from tdn.tracking.mlflow_store import (
    DATASET_TAG,
    DESCRIPTION_TAG,
    ENSEMBLE_OF_TAG,
    INDEX_CHECKSUM_TAG,
    KIND_EVALUATION,
    KIND_TAG,
    MODEL_ID_TAG,
    MODEL_NAME_TAG,
    MODEL_RUN_ID_TAG,
    MODEL_VERSION_TAG,
    NUM_VIDEOS_TAG,
    PROTOCOL_TAG,
    SPLIT_TAG,
)

DEFAULT_EXPERIMENT = "tdn-evaluation"


@dataclass
class EvalResult:
    """One row of the results table. Accuracies are percentages (the paper's unit)."""

    model_id: str  # what was evaluated: models:/name/version, a checkpoint URI, or official:<path>
    arch: str
    variant: str
    frames: str  # segments per clip; "8+16" for an ensemble of an 8- and a 16-frame model
    clips: int
    crops: int
    input_size: int
    short_side: int
    dataset: str
    split: str
    index_checksum: str
    num_videos: int
    top1_pct: float
    top5_pct: float
    mean_class_top1_pct: float  # top-1 averaged over classes
    ms_per_video: float  # wall time of the whole evaluation (loading included) / videos, the paper's Table 5
    videos_per_s: float
    gflops: float  # multiply-adds (G) of one view; the paper writes "36x30" for 30 views
    protocol: str = ""
    model_name: str = ""
    model_version: str = ""
    model_run_id: str = ""
    split_number: int = 0  # 1..3 for UCF101/HMDB51 splits, 0 otherwise
    pretrain: str = ""  # e.g. "kinetics" for transferred models (Table 4)
    device: str = ""
    replicas: int = 1
    ensemble_of: list[str] = field(default_factory=list)  # evaluation run ids an ensemble combines
    # where input_size / short_side came from: "checkpoint" (the model's training config), "user", "protocol"
    sizes_from: str = ""
    trained_input_size: int = 0  # the model's training crop; 0: unknown
    trained_short_side: int = 0  # the model's eval short side in training; 0: unknown
    size_mismatch: str = ""  # the warning printed when the sizes given differ from the model's; "" otherwise
    # the MLflow logged model behind a models:/ URI (its model version's model_id); "" for a checkpoint file
    logged_model_id: str = ""
    shards: str = ""  # the split folder evaluated (local path or s3:// URI); "" before issue 15

    @property
    def views(self) -> int:
        return self.clips * self.crops

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> EvalResult:
        """A row from results.json / a CSV line; rows written before issue 15 (``top1`` ...) are read too."""
        data = {OLD_FIELDS.get(k, k): v for k, v in data.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# field names of rows written before issue 15 (the values were percentages already)
OLD_FIELDS = {"top1": "top1_pct", "top5": "top5_pct", "mean_class_acc": "mean_class_top1_pct"}
# row field -> MLflow metric of the evaluation run; every other field is a param
METRICS = {
    "top1_pct": "eval/top1_pct",
    "top5_pct": "eval/top5_pct",
    "mean_class_top1_pct": "eval/mean_class_top1_pct",
    "ms_per_video": "eval/ms_per_video",
    "videos_per_s": "eval/videos_per_s",
    "gflops": "eval/gflops_per_view",
}
# the metric keys of runs logged before issue 15 (num_videos was a metric then; now a param and a tag)
OLD_METRICS = {
    **{new: old for old, new in OLD_FIELDS.items()},
    **{same: same for same in ("ms_per_video", "videos_per_s", "gflops")},
}


def write_outputs(
    out_dir: str | os.PathLike,
    result: EvalResult,
    video: VideoScores,
    class_names: Sequence[str] = (),
    figures: Sequence[ReportFigure] = (),
) -> list[Path]:
    """Write the result files (module docstring) into ``out_dir`` (created); returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    num_classes = video.scores.shape[1]
    names = list(class_names) if len(class_names) == num_classes else [str(i) for i in range(num_classes)]
    acc = per_class_accuracy(video.scores, video.labels, num_classes)
    cm = confusion_matrix(video.scores, video.labels, num_classes)

    per_class = {n: (None if np.isnan(a) else float(a)) for n, a in zip(names, acc)}
    _write_result_row(out, result, {"per_class_accuracy": per_class})
    _write_text(out / "per_class.csv", per_class_csv(class_accuracies(cm, names)))
    scores = _write_scores(out, video, names)
    report = write_evaluation_report(out, cm, names, report_summary(result), figures)
    return [out / n for n in ("results.json", "results.csv", "per_class.csv")] + scores + report


def write_unlabelled_outputs(
    out_dir: str | os.PathLike, result: EvalResult, video: VideoScores, class_names: Sequence[str] = ()
) -> list[Path]:
    """A split without labels: results.json / .csv (the protocol, accuracies null), per_video_scores.npz and
    predictions.csv; nothing that needs labels (per-class accuracy, confusion, report)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    num_classes = video.scores.shape[1]
    names = list(class_names) if len(class_names) == num_classes else [str(i) for i in range(num_classes)]
    _write_result_row(out, result, {"labelled": False})
    return [out / "results.json", out / "results.csv"] + _write_scores(out, video, names)


def json_row(row: Mapping) -> dict:
    """A result row with NaN (no accuracy: an unlabelled split) as null, valid JSON."""
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}


def _write_result_row(out: Path, result: EvalResult, extra: Mapping) -> None:
    row = json_row(result.to_dict())
    _write_text(out / "results.json", json.dumps({**row, **extra}, indent=1, ensure_ascii=False) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(row))
    writer.writeheader()
    writer.writerow(
        {k: (";".join(v) if isinstance(v, list) else ("" if v is None else v)) for k, v in row.items()}
    )
    _write_text(out / "results.csv", buf.getvalue())


def _write_scores(out: Path, video: VideoScores, names: Sequence[str]) -> list[Path]:
    """per_video_scores.npz and predictions.csv (video, label, top-5 classes and probabilities)."""
    npz = out / "per_video_scores.npz"
    tmp = out / ".per_video_scores.tmp.npz"
    np.savez(
        tmp,
        video_ids=np.asarray(video.video_ids, dtype=str),
        labels=np.asarray(video.labels, dtype=np.int64),
        scores=np.asarray(video.scores, dtype=np.float32),
        num_views=np.asarray(video.num_views, dtype=np.int64),
    )
    os.replace(tmp, npz)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    k = min(5, len(names))
    writer.writerow(["video_id", "label", *[c for i in range(k) for c in (f"top{i + 1}", f"prob{i + 1}")]])
    order = np.argsort(-video.scores, axis=1, kind="stable")[:, :k]
    for vid, label, top, row in zip(video.video_ids, video.labels, order, video.scores):
        cells = [c for j in top for c in (names[j], f"{row[j]:.6f}")]
        writer.writerow([vid, names[label] if label >= 0 else "", *cells])
    _write_text(out / "predictions.csv", buf.getvalue())
    return [npz, out / "predictions.csv"]


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_video_scores(path: str | os.PathLike) -> VideoScores:
    """Read a per_video_scores.npz back (no pickles)."""
    with np.load(path, allow_pickle=False) as z:
        return VideoScores(
            video_ids=z["video_ids"].astype(str),
            labels=z["labels"].astype(np.int64),
            scores=z["scores"].astype(np.float64),
            num_views=z["num_views"].astype(np.int64),
        )


def report_summary(result: EvalResult) -> ReportSummary:
    """The protocol and headline numbers report.html shows."""
    return ReportSummary(
        title=f"{result.model_id} on {result.dataset}/{result.split}",
        model_id=result.model_id,
        dataset=result.dataset,
        split=result.split,
        frames=result.frames,
        clips=result.clips,
        crops=result.crops,
        input_size=result.input_size,
        short_side=result.short_side,
        index_checksum=result.index_checksum,
        num_videos=result.num_videos,
        top1_pct=result.top1_pct,
        top5_pct=result.top5_pct,
        mean_class_top1_pct=result.mean_class_top1_pct,
        ms_per_video=result.ms_per_video,
        videos_per_s=result.videos_per_s,
        gflops_per_view=result.gflops,
    )


# ----------------------------------------------------------------------------------------------- MLflow


def run_tags(result: EvalResult) -> dict[str, str]:
    tags = {
        **source_tags(),
        KIND_TAG: KIND_EVALUATION,
        NUM_VIDEOS_TAG: str(result.num_videos),
        MODEL_ID_TAG: result.model_id,
        INDEX_CHECKSUM_TAG: result.index_checksum,
        DATASET_TAG: result.dataset,
        SPLIT_TAG: result.split,
        PROTOCOL_TAG: result.protocol,
    }
    if result.model_name:
        tags[MODEL_NAME_TAG] = result.model_name
        tags[MODEL_VERSION_TAG] = str(result.model_version)
    if result.model_run_id:
        tags[MODEL_RUN_ID_TAG] = result.model_run_id
    if result.ensemble_of:
        tags[ENSEMBLE_OF_TAG] = ",".join(result.ensemble_of)
    return tags


@dataclass(frozen=True)
class EvalRunSpec:
    """Where and how an evaluation run is logged (log_evaluation_run)."""

    tracking_uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    extra_tags: Mapping[str, str] = field(default_factory=dict)
    run_name: str = ""  # "": eval-<model>[-v<version>]-<dataset>-<split>
    # the evaluated split as a dataset input; None: one made from the row, without profile
    dataset: ShardDataset | None = None
    started_ms: int = 0  # when the evaluation began (ms since the epoch), the run's start; 0: now


def run_name(result: EvalResult) -> str:
    """``eval-<registered name>-v<version>-<dataset>-<split>`` (``eval-<file>-...`` for a checkpoint file):
    each re-evaluation of another version is told apart in the runs list."""
    model = (
        f"{result.model_name}-v{result.model_version}" if result.model_name else Path(result.model_id).name
    )
    return f"eval-{model}-{result.dataset}-{result.split}"


def log_evaluation_run(
    result: EvalResult, files: Sequence[str | os.PathLike], spec: EvalRunSpec = EvalRunSpec()
) -> str:
    """Create the evaluation run (params = protocol, metrics = numbers, artifacts = files, its description
    saying what was evaluated on what, and how); returns its id. Its start time is ``spec.started_ms``, so
    its duration on the page covers the work, not only the logging.

    Written through an explicit client, so it never touches a caller's active run (transfer logs child runs).
    """
    client = mlflow_store.tracking_client(spec.tracking_uri)
    tags = {**run_tags(result), DESCRIPTION_TAG: evaluation_description(result), **dict(spec.extra_tags)}
    row = result.to_dict()
    params = {k: ";".join(v) if isinstance(v, list) else v for k, v in row.items() if k not in METRICS}
    dataset = spec.dataset or ShardDataset.of_split(
        result.dataset, result.split, result.index_checksum, result.shards, "evaluation", result.num_videos
    )
    models = [result.logged_model_id] if result.logged_model_id else []
    experiment_id = mlflow_store.get_or_create_experiment(client, spec.experiment)
    run = mlflow_store.create_run(
        client, experiment_id, spec.run_name or run_name(result), tags, spec.started_ms or None
    )
    try:
        run.log_inputs([dataset], models)
        run.log(
            params=params,
            metrics={key: float(row[field]) for field, key in METRICS.items()},
            model_id=result.logged_model_id,
            dataset=dataset.ref(),
        )
        for f in files:
            run.log_artifact(str(f))
    except BaseException:
        run.finish("FAILED")
        raise
    run.finish("FINISHED")
    return run.run_id


def result_from_run(run) -> EvalResult:  # noqa: ANN001 - an mlflow.entities.Run
    """Rebuild the row from an evaluation run's params and metrics (what tables read)."""
    hints = {f.name: f.type for f in dataclasses.fields(EvalResult)}
    data: dict = {}
    for key, value in run.data.params.items():
        if key not in hints:
            continue
        tp = hints[key]
        if tp in ("int", int):
            data[key] = int(float(value)) if value not in ("", "None") else 0
        elif tp in ("float", float):
            data[key] = float(value)
        elif key == "ensemble_of":
            data[key] = [v for v in value.split(";") if v]
        else:
            data[key] = value
    metrics = run.data.metrics
    for field_name, key in METRICS.items():
        old = OLD_METRICS[field_name]
        if key in metrics or old in metrics:
            data[field_name] = float(metrics[key] if key in metrics else metrics[old])
    if "num_videos" in metrics:  # runs logged before issue 15 kept the count as a metric
        data["num_videos"] = int(metrics["num_videos"])
    return EvalResult.from_dict(data)


def download_run_scores(run_id: str, tracking_uri: str | None = None) -> VideoScores:
    """The per_video_scores.npz of an evaluation run (ensembles combine these without re-running inference)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow_store.download_run_artifact(run_id, "per_video_scores.npz", tmp, tracking_uri)
        return load_video_scores(path)
