"""Scheduled re-evaluation: registered model versions with no result on the current evaluation shards.

    versions = all READY versions of the registered models (or of one alias, e.g. "champion")
    done     = evaluation runs tagged with (model name, version, index checksum, protocol), at the sizes
               given, or when none are given, at the model's own (from its checkpoint's training config)
    evaluate versions - done, one after the other; then refresh the tables if anything new was added

The shard index checksum identifies "the current evaluation shards": re-sharding the split (new videos, new
sampling) changes it and every version gets evaluated again; running twice on the same shards evaluates
nothing the second time. A version that fails (e.g. trained for other classes) is reported and skipped; it
does not stop the others.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tdn.evaluation.batch_inference import evaluate
from tdn.evaluation.model_source import ModelSource
from tdn.evaluation.protocol import EvalConfig
from tdn.evaluation.results import DEFAULT_EXPERIMENT
from tdn.evaluation.split import read_split
from tdn.evaluation.table_runs import refresh_tables
from tdn.tracking import mlflow_store
from tdn.tracking.mlflow_store import (
    INDEX_CHECKSUM_TAG,
    KIND_EVALUATION,
    KIND_TAG,
    MODEL_NAME_TAG,
    MODEL_VERSION_TAG,
    PROTOCOL_TAG,
    TRIGGER_TAG,
)
from tdn.tracking.registry import ready_versions

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


@dataclass
class ReevaluateConfig:
    shards: str = ""  # the evaluation split folder (index.json) whose checksum defines "current"
    models: list[str] = field(default_factory=list)  # registered model names; empty = every registered model
    alias: str = ""  # only the version carrying this alias (e.g. champion); empty = all versions
    out: str = "results/reevaluate"  # one sub-folder per evaluated version
    tables_out: str = "results/tables"  # where the refreshed benchmark tables are written
    with_paper: bool = True  # print the paper's numbers beside ours in the tables
    tracking_uri: str = ""  # empty: MLFLOW_TRACKING_URI
    experiment: str = DEFAULT_EXPERIMENT  # MLflow experiment of the evaluation runs
    every: str = ""  # e.g. "6h", "30m": loop forever with this pause; empty = once
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class ReevaluateReport:
    index_checksum: str
    candidates: list[str]  # models:/name/version considered
    evaluated: dict[str, str] = field(default_factory=dict)  # model URI -> evaluation run id
    skipped: list[str] = field(default_factory=list)  # already had a result
    failed: dict[str, str] = field(default_factory=dict)  # model URI -> error
    tables_run_id: str = ""


def parse_interval(text: str) -> float:
    """'6h' -> 21600.0; units s, m, h, d."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if m is None:
        raise ValueError(f"interval {text!r}: expected a number and a unit s/m/h/d, e.g. 6h")
    value = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if value <= 0:
        raise ValueError(f"interval {text!r} must be positive")
    return value


def has_result(client: MlflowClient, name: str, version: str, checksum: str, cfg: EvalConfig) -> bool:
    """Is there a FINISHED evaluation run of this version on these shards with this protocol and sizes?

    Sizes given in ``cfg`` must match; sizes left 0 are the model's own (protocol.resolve_protocol), so a
    run counts only if it was made without sizes given (runs from before sizes were recorded do not count)."""
    if cfg.sizes_given:
        given = (("input_size", cfg.input_size), ("short_side", cfg.short_side))
        sizes = "".join(f" and params.{key} = '{value}'" for key, value in given if value)
    else:
        sizes = " and params.sizes_from != 'user'"
    filt = (
        f"tags.`{KIND_TAG}` = '{KIND_EVALUATION}' and tags.`{MODEL_NAME_TAG}` = '{name}' and "
        f"tags.`{MODEL_VERSION_TAG}` = '{version}' and tags.`{INDEX_CHECKSUM_TAG}` = '{checksum}' and "
        f"tags.`{PROTOCOL_TAG}` = '{cfg.protocol}'{sizes} and attributes.status = 'FINISHED'"
    )
    return bool(mlflow_store.search_runs_everywhere(client, filt, max_results=1))


def reevaluate_once(cfg: ReevaluateConfig) -> ReevaluateReport:
    """One pass: evaluate what is missing, then refresh the tables if something was added. The split's
    index is read once per pass; each version's evaluation gets it."""
    if not cfg.shards:
        raise ValueError("reevaluate needs shards: the evaluation split folder")
    tracking = mlflow_store.resolve_tracking_uri(cfg.tracking_uri)
    client = mlflow_store.tracking_client(tracking)
    split = read_split(cfg.shards)
    checksum = split.index.checksum
    versions = ready_versions(client, cfg.models, cfg.alias)
    report = ReevaluateReport(checksum, [f"models:/{n}/{v}" for n, v in versions])
    for name, version in versions:
        uri = f"models:/{name}/{version}"
        if has_result(client, name, version, checksum, cfg.eval):
            report.skipped.append(uri)
            continue
        out = Path(cfg.out) / f"{name}-v{version}-{checksum[:12]}"
        try:
            outcome = evaluate(
                ModelSource(uri=uri),
                split,
                cfg.eval,
                out,
                tracking,
                cfg.experiment,
                extra_tags={TRIGGER_TAG: "reevaluate"},
            )
        except Exception as exc:  # noqa: BLE001 - one bad version must not block the others
            log.error("reevaluate: %s failed: %s", uri, exc)
            report.failed[uri] = f"{type(exc).__name__}: {exc}"
            continue
        report.evaluated[uri] = outcome.run_id
    if report.evaluated:
        _, report.tables_run_id = refresh_tables(tracking, cfg.tables_out, cfg.with_paper)
    log.info(
        "reevaluate: %d candidate(s), %d evaluated, %d already done, %d failed",
        len(versions),
        len(report.evaluated),
        len(report.skipped),
        len(report.failed),
    )
    return report


def reevaluate_loop(
    cfg: ReevaluateConfig,
    on_report: Callable[[ReevaluateReport], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_passes: int | None = None,
) -> None:
    """Run passes every ``cfg.every`` (single-machine scheduling; clusters use infra/'s schedule)."""
    interval = parse_interval(cfg.every)
    passes = 0
    while max_passes is None or passes < max_passes:
        started = time.monotonic()
        try:
            report = reevaluate_once(cfg)
            if on_report is not None:
                on_report(report)
        except Exception as exc:  # noqa: BLE001 - a pass that fails (server down) is retried next time
            log.error("reevaluate pass failed: %s", exc)
        passes += 1
        if max_passes is not None and passes >= max_passes:
            return
        sleep(max(0.0, interval - (time.monotonic() - started)))
