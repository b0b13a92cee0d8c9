"""The training run's metric keys (the metric convention, docs/ARCHITECTURE.md): ``<section>/<name>``,
accuracies in percent named ``*_pct``, every value at step = the global optimiser step; counters (epoch,
step, samples) are never metrics. The Ray-reported metrics dict, a checkpoint's ``metrics``, metrics.csv and
``checkpoint.monitor`` use these keys, plus the counters ``epoch`` and ``step`` (never logged to MLflow).

MLflow gets some of them under other names (``mlflow_key``): its run page groups charts by the text before
the first "/", so the same quantity of train and val shares a section there and their charts sit side by
side: ``loss/train``, ``loss/val``, ``top1_pct/train``, ``top1_pct/val``, ``top1_pct/val_best``. Runs logged
before issue 25 have ``train/epoch_loss``, ``val/loss``, ``best/val_top1_pct`` ...; no code reads training
metrics back from MLflow (tables read evaluation runs), so both stay readable as they are.
"""

from __future__ import annotations

# every run.log_every_steps steps (the console's progress line shows the same numbers)
LOSS = "train/loss"
LR = "train/lr"
SAMPLES_PER_S = "train/samples_per_s"
DATA_WAIT_PCT = "train/data_wait_pct"
NEXT_BATCH_P50_S = "train/next_batch_p50_s"
NEXT_BATCH_P95_S = "train/next_batch_p95_s"
STEP_METRICS = (LOSS, LR, SAMPLES_PER_S, DATA_WAIT_PCT, NEXT_BATCH_P50_S, NEXT_BATCH_P95_S)

# once per epoch
EPOCH_LOSS = "train/epoch_loss"
EPOCH_TOP1_PCT = "train/epoch_top1_pct"
EPOCH_TIME_S = "train/epoch_time_s"
# once per validated epoch (they carry the val split as their MLflow dataset)
VAL_LOSS = "val/loss"
VAL_TOP1_PCT = "val/top1_pct"
VAL_TOP5_PCT = "val/top5_pct"
EPOCH_METRICS = (EPOCH_LOSS, EPOCH_TOP1_PCT, EPOCH_TIME_S, VAL_LOSS, VAL_TOP1_PCT, VAL_TOP5_PCT)

# in the Ray dict and the checkpoint only (the step metrics above already carry them to MLflow)
EPOCH_SAMPLES_PER_S = "train/epoch_samples_per_s"
EPOCH_DATA_WAIT_PCT = "train/epoch_data_wait_pct"
EPOCH = "epoch"  # counters: epochs done, global step
STEP = "step"


def best_key(monitor: str) -> str:
    """The metric of the best checkpoint's score: ``val/top1_pct`` -> ``best/val_top1_pct``."""
    return "best/" + monitor.replace("/", "_")


# key here -> key in MLflow (module docstring); the others keep their names (train/lr, train/samples_per_s, ...)
MLFLOW_KEYS = {
    LOSS: "loss/train_step",  # every log_every_steps steps, the mean over those steps
    EPOCH_LOSS: "loss/train",  # the epoch's mean
    VAL_LOSS: "loss/val",
    EPOCH_TOP1_PCT: "top1_pct/train",
    VAL_TOP1_PCT: "top1_pct/val",
    VAL_TOP5_PCT: "top5_pct/val",
}


def mlflow_key(key: str) -> str:
    """The MLflow name of a training metric: ``val/loss`` -> ``loss/val``."""
    return MLFLOW_KEYS.get(key, key)


def mlflow_best_key(monitor: str) -> str:
    """The MLflow name of the best score so far, beside its metric: ``val/top1_pct`` -> ``top1_pct/val_best``."""
    return mlflow_key(monitor) + "_best"
