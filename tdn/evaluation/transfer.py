"""Transfer of a Kinetics-pretrained model to UCF101 and HMDB51 (the paper's Table 4), three splits each.

    pretrained (project checkpoint, models:/..., or an official TDN file)
      │ prepare_init: every weight but the classifier -> a model with the dataset's classes, 16 segments,
      │               dropout 0.8 and a freshly initialised head (the released recipe) -> init checkpoint
      ▼ for dataset in (ucf101, hmdb51), split in (1, 2, 3):
            shard job (train + test lists of that split) -> Ray Train run (tdn.training.launcher.fit, init.checkpoint)
            -> evaluate the final checkpoint on the test list -> per-split top-1
        mean over the splits per dataset

MLflow: one parent run (experiment ``tdn-transfer``, tag tdn.kind=transfer) holding the recipe, per-split and
mean accuracies (``transfer/<dataset>_split<k>_top1_pct``, ``transfer/<dataset>_mean_top1_pct``) and
transfer_results.json; one child run per split, which is the training run itself (the trainer's tracker logs
into the run carrying its ``tdn.train_run`` tag, created here as a child) and gets the test accuracy
(``transfer/test_top1_pct``, ``_top5_pct``, ``_mean_class_top1_pct``, carrying the test split); the
evaluation runs (tdn.kind=evaluation, tagged with the parent id as tdn.transfer_id) are children of the split runs and feed tables.py's Table 4.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline import storage
from pipeline.config import config_from_dict, config_to_dict, flatten
from pipeline.datasets import DatasetConfig
from pipeline.loading.config import LoaderConfig
from pipeline.loading.shard_reading import read_index
from pipeline.shards.job import ShardConfig, run_shard_job
from tdn.checkpoints.project import save_checkpoint, strict_load
from tdn.evaluation.batch_inference import evaluate
from tdn.evaluation.model_source import ModelSource, load_model
from tdn.evaluation.protocol import EvalConfig
from tdn.model.networks import ModelConfig, build_model_from_config
from tdn.tracking import mlflow_store
from tdn.tracking.lineage import ShardDataset, source_tags
from tdn.tracking.mlflow_store import (
    DATASET_TAG,
    DESCRIPTION_TAG,
    EVAL_RUN_ID_TAG,
    KIND_TAG,
    KIND_TRANSFER,
    PARENT_RUN_TAG,
    SPLIT_NUMBER_TAG,
    TRAIN_RUN_TAG,
    TRANSFER_TAG,
    LoggedRun,
)
from tdn.tracking.tracker import TrackingConfig
from tdn.training.config import DataConfig, InitConfig, RunConfig, TrainConfig
from tdn.training.launcher import fit
from tdn.training.optim import OptimConfig

log = logging.getLogger(__name__)

TransferDatasetName = Literal["ucf101", "hmdb51"]
RESULTS_FILE = "transfer_results.json"  # in work_dir, and an artifact of the parent run


@dataclass
class TransferOptimConfig(OptimConfig):
    """OptimConfig with the released UCF101/HMDB51 recipe as its defaults (so overriding one field keeps
    the rest of the recipe): lr 0.002 for 16 x 8 GPUs, steps at epochs 10 and 20, 25 epochs."""

    lr: float = 0.002
    reference_batch: int = 128  # the released recipe: 16 x 8 GPUs
    epochs: int = 25
    schedule: Literal["step", "cosine"] = "step"
    steps: list[int] = field(default_factory=lambda: [10, 20])


@dataclass
class TransferData:
    """Where the datasets are (official layouts; annotations "" = the usual folder inside the root)."""

    ucf101_root: str = "data/UCF101"  # UCF101 videos
    ucf101_annotations: str = ""  # its ucfTrainTestlist folder
    hmdb51_root: str = "data/HMDB51"  # HMDB51 videos
    hmdb51_annotations: str = ""  # its split lists folder


@dataclass
class TransferConfig:
    pretrained: ModelSource = field(default_factory=ModelSource)
    # target datasets
    datasets: list[TransferDatasetName] = field(default_factory=lambda: ["ucf101", "hmdb51"])
    splits: list[int] = field(default_factory=lambda: [1, 2, 3])  # official splits to run
    data: TransferData = field(default_factory=TransferData)
    work_dir: str = "results/transfer"  # shards, init checkpoints, Ray results and evaluation outputs
    num_segments: int = 16  # segments T of the fine-tuned model
    dropout: float = 0.8  # dropout of the fine-tuned classifier
    pretrain_label: str = "Kinetics"  # Table 4's "Pretrain" column
    # per split, shard.dataset / shard.output / shard.num_segments and run.name / init.checkpoint are set here;
    # run.storage_path "./ray_results" (the default) becomes <work_dir>/ray
    shard: ShardConfig = field(default_factory=lambda: ShardConfig(splits=["train", "test"]))
    optim: TransferOptimConfig = field(default_factory=TransferOptimConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    run: RunConfig = field(default_factory=RunConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking_uri: str = ""  # empty: MLFLOW_TRACKING_URI, else the trainer's default sqlite store
    experiment: str = "tdn-transfer"  # MLflow experiment of the parent and split runs
    train_tracking: bool = True  # the trainer logs its per-step metrics into the split's child run
    # splits run concurrently (each its own shard job, Ray Train run and evaluation); the cluster's resources
    # queue what does not fit. 1 = one after the other.
    parallel_splits: int = 1

    def __post_init__(self) -> None:
        if self.parallel_splits < 1:
            raise ValueError(f"parallel_splits must be >= 1, got {self.parallel_splits}")
        bad = [s for s in self.splits if s not in (1, 2, 3)]
        if bad or not self.splits:
            raise ValueError(f"splits must be among 1, 2, 3; got {self.splits}")
        if not self.datasets or any(d not in ("ucf101", "hmdb51") for d in self.datasets):
            raise ValueError(f"datasets must be among ucf101, hmdb51; got {self.datasets}")

    def tracking(self) -> str:
        return mlflow_store.resolve_tracking_uri(self.tracking_uri)


@dataclass
class SplitResult:
    dataset: str
    split: int
    top1_pct: float
    top5_pct: float
    mean_class_top1_pct: float
    num_videos: int
    train_run_id: str
    eval_run_id: str
    checkpoint: str


@dataclass
class TransferReport:
    parent_run_id: str
    splits: list[SplitResult]
    mean_top1_pct: dict[str, float]  # dataset -> mean over its splits


# ----------------------------------------------------------------------------------------------- steps


def prepare_init(
    source: ModelSource,
    num_classes: int,
    class_names: list[str],
    num_segments: int,
    dropout: float,
    out_path: str,
    tracking_uri: str | None = None,
) -> ModelConfig:
    """Write the fine-tuning start: the pretrained weights without the classifier + a fresh head.

    Every backbone weight must fit (same arch, variant and width); the head (``fc``) is always new, even
    when the class counts happen to agree, as in the released recipe (a new ``new_fc``).
    """
    loaded = load_model(source, tracking_uri)
    src_cfg = config_from_dict(ModelConfig, loaded.model_config)
    cfg = dataclasses.replace(src_cfg, num_classes=num_classes, num_segments=num_segments, dropout=dropout)
    model = build_model_from_config(cfg)
    own = model.state_dict()
    state = {k: v for k, v in loaded.state_dict.items() if not k.startswith("fc.")}
    state.update({k: v for k, v in own.items() if k.startswith("fc.")})
    strict_load(model, state, f"pretrained weights {loaded.model_id}")
    save_checkpoint(out_path, model, cfg, class_names)
    return cfg


def _dataset_config(cfg: TransferConfig, name: str, split: int) -> DatasetConfig:
    root = cfg.data.ucf101_root if name == "ucf101" else cfg.data.hmdb51_root
    ann = cfg.data.ucf101_annotations if name == "ucf101" else cfg.data.hmdb51_annotations
    return DatasetConfig(format=name, root=root, annotations=ann, split_number=split)  # type: ignore[arg-type]


def shard_split(cfg: TransferConfig, name: str, split: int, address: str | None) -> str:
    """Shards of one official split (train + test lists) under work_dir/shards/<name>/split<k>."""
    out = storage.join(cfg.work_dir, "shards", name, f"split{split}")
    shard_cfg = dataclasses.replace(
        cfg.shard, dataset=_dataset_config(cfg, name, split), output=out, num_segments=cfg.num_segments
    )
    summary = run_shard_job(shard_cfg, address=address)
    if not summary.ok:
        raise RuntimeError(f"{name} split {split}: too many videos failed to shard ({summary.splits})")
    return out


def _child_about(name: str, split: int) -> str:
    return (
        f"Fine-tuning on **{name} split {split}** (the official train list), then evaluated on its test list: "
        "the training curves are this run's, the test accuracy is `transfer/test_top1_pct`, the evaluation run "
        f"is nested below (tag `{EVAL_RUN_ID_TAG}`)."
    )


def _child_run(parent: LoggedRun, run_key: str, name: str, split: int) -> LoggedRun:
    tags = {
        DESCRIPTION_TAG: _child_about(name, split),
        PARENT_RUN_TAG: parent.run_id,
        TRAIN_RUN_TAG: run_key,
        TRANSFER_TAG: parent.run_id,
        DATASET_TAG: name,
        SPLIT_NUMBER_TAG: str(split),
    }
    return mlflow_store.create_run(parent.client, parent.experiment_id, f"{name}-split{split}", tags)


def run_split(
    cfg: TransferConfig, name: str, split: int, parent: LoggedRun, address: str | None
) -> SplitResult:
    """Shard, fine-tune (Ray Train) and evaluate one split; the training run is the split's child run."""
    tracking = cfg.tracking()
    shards = shard_split(cfg, name, split, address)
    classes = list(read_index(storage.join(shards, "train")).classes)
    init = storage.join(cfg.work_dir, "init", f"{name}-split{split}.pt")
    model_cfg = prepare_init(
        cfg.pretrained, len(classes), classes, cfg.num_segments, cfg.dropout, init, tracking
    )
    run_key = f"transfer-{parent.run_id[:8]}-{name}-split{split}-{secrets.token_hex(2)}"
    child = _child_run(parent, run_key, name, split)
    default_storage = RunConfig().storage_path
    storage_path = cfg.run.storage_path
    if storage_path == default_storage:
        storage_path = storage.join(cfg.work_dir, "ray")
    train_cfg = TrainConfig(
        model=model_cfg,
        init=InitConfig(checkpoint=init),
        data=DataConfig(shards=shards, train_split="train", val_split=""),
        loader=cfg.loader,
        optim=cfg.optim,
        run=dataclasses.replace(cfg.run, name=run_key, storage_path=storage_path),
        # per-split models are results, not deployable versions: nothing is registered
        tracking=TrackingConfig(
            enabled=cfg.train_tracking, uri=tracking, experiment=cfg.experiment, registered_model=""
        ),
    )
    result = fit(train_cfg, address=address)
    if result.error is not None:
        raise RuntimeError(f"{name} split {split}: training failed: {result.error}")
    eval_cfg = dataclasses.replace(cfg.eval, split_number=split, pretrain=cfg.pretrain_label)
    with result.checkpoint.as_directory() as ckpt_dir:
        ckpt = os.path.join(ckpt_dir, "checkpoint.pt")
        out = evaluate(
            ModelSource(uri=ckpt),
            storage.join(shards, "test"),
            eval_cfg,
            Path(cfg.work_dir) / "eval" / name / f"split{split}",
            tracking,
            cfg.experiment,
            extra_tags={TRANSFER_TAG: parent.run_id, PARENT_RUN_TAG: child.run_id},
        )
    r = out.result
    # (the trainer logged its own train/ and val/ curves into this run; nothing of them is copied)
    test = ShardDataset.of_split(r.dataset, r.split, r.index_checksum, r.shards, "evaluation", r.num_videos)
    tested = {
        "test_top1_pct": r.top1_pct,
        "test_top5_pct": r.top5_pct,
        "test_mean_class_top1_pct": r.mean_class_top1_pct,
    }
    child.log(metrics={f"transfer/{k}": v for k, v in tested.items()}, dataset=test.ref())
    child.set_tag(EVAL_RUN_ID_TAG, out.run_id)
    # the trainer wrote its own description into this run (what was trained on what): the split's goes first
    trained = child.client.get_run(child.run_id).data.tags.get(DESCRIPTION_TAG, "")
    about = _child_about(name, split)
    if not trained.startswith(about):
        child.set_tag(DESCRIPTION_TAG, f"{about}\n\n{trained}".strip())
    child.finish("FINISHED")
    return SplitResult(
        name,
        split,
        r.top1_pct,
        r.top5_pct,
        r.mean_class_top1_pct,
        r.num_videos,
        child.run_id,
        out.run_id,
        str(result.checkpoint.path),
    )


def transfer_description(cfg: TransferConfig) -> str:
    """The parent run's description (Markdown): what is fine-tuned from what, on which splits, how."""
    source = cfg.pretrained.uri or f"the official checkpoint `{cfg.pretrained.official}`"
    o = cfg.optim
    return "\n".join(
        [
            f"Transfer of {source} to {', '.join(cfg.datasets)}, official splits "
            f"{', '.join(map(str, cfg.splits))} (the paper's Table 4, pretrain label {cfg.pretrain_label}): per "
            "split, the shard job, a fine-tuning run and an evaluation of the test list; the split runs are "
            "nested below.",
            "",
            f"**Recipe**: {cfg.num_segments} segments, dropout {cfg.dropout:g}, a new classifier; SGD lr {o.lr:g} "
            f"per {o.reference_batch} samples, {o.epochs} epochs, {o.schedule} schedule "
            f"({', '.join(map(str, o.steps))}); evaluation protocol `{cfg.eval.protocol}`.",
            "**Results**: `transfer/<dataset>_split<k>_top1_pct`, `transfer/<dataset>_mean_top1_pct`, and "
            "`transfer_results.json`.",
        ]
    )


def _preimport() -> None:
    """Import what the split threads use before they start: concurrent first imports of the same packages
    (protobuf descriptors in mlflow, matplotlib) are not thread-safe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import mlflow.entities  # noqa: F401
    import ray.data  # noqa: F401
    import ray.train.torch  # noqa: F401


def run_transfer(cfg: TransferConfig, address: str | None = None) -> TransferReport:
    """Every (dataset, split) in order, under one parent MLflow run; returns the per-split and mean top-1."""
    cfg.pretrained.check()
    client = mlflow_store.tracking_client(cfg.tracking())
    tags = {**source_tags(), KIND_TAG: KIND_TRANSFER, DESCRIPTION_TAG: transfer_description(cfg)}
    with mlflow_store.logged_run(client, cfg.experiment, "transfer", tags) as parent:
        parent.log(params=flatten(config_to_dict(cfg)))
        todo = [(name, split) for name in cfg.datasets for split in cfg.splits]

        def one(job: tuple[str, int]) -> SplitResult:
            t0 = time.perf_counter()
            r = run_split(cfg, job[0], job[1], parent, address)
            log.info(
                "transfer %s split %d: top-1 %.2f%% (%.0f s)",
                r.dataset,
                r.split,
                r.top1_pct,
                time.perf_counter() - t0,
            )
            return r

        if cfg.parallel_splits == 1:
            results = [one(job) for job in todo]
        else:
            _preimport()
            with ThreadPoolExecutor(cfg.parallel_splits, thread_name_prefix="transfer") as pool:
                futures = [pool.submit(one, job) for job in todo]
                wait(futures)
            errors = [(job, f.exception()) for job, f in zip(todo, futures) if f.exception() is not None]
            if errors:
                failed = ", ".join(f"{n} split {k}: {e}" for (n, k), e in errors)
                raise RuntimeError(
                    f"{len(errors)} of {len(todo)} transfer splits failed: {failed}"
                ) from errors[0][1]
            results = [f.result() for f in futures]
        split_top1 = {f"transfer/{r.dataset}_split{r.split}_top1_pct": r.top1_pct for r in results}
        means: dict[str, float] = {}
        for name in cfg.datasets:
            vals = [r.top1_pct for r in results if r.dataset == name]
            means[name] = sum(vals) / len(vals)
        parent.log(metrics={**split_top1, **{f"transfer/{n}_mean_top1_pct": m for n, m in means.items()}})
        report = TransferReport(parent.run_id, results, means)
        out = Path(cfg.work_dir) / RESULTS_FILE
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(dataclasses.asdict(report), indent=1) + "\n", encoding="utf-8")
        parent.log_artifact(str(out))
    return report
