"""``predict(PredictConfig)``: videos -> class names (and embeddings, Grad-CAM maps), from one file to millions.

list_sources (sources.py)         SOURCE... -> [VideoInput], each once (InputError when none)
load_model (evaluation)           checkpoint file or folder | models:/name@alias | released TDN file
plan_prediction                   the model's recipe (tdn/checkpoints/recipe.py) > protocol defaults, flags
                                  over both: each override printed once and recorded in every row
parts                             videos in order, ``videos_per_part`` each; part k of --out is
                                  <out>.parts/part-<k>-<fingerprint>.<ext> (the fingerprint covers its videos,
                                  the model, the protocol and the columns): present = done, skipped
engine local (few videos)         Predictor (scoring.py) in this process, part by part
engine ray                        Ray Data over the videos still to do (replica.py), parts written as they
                                  complete, a progress line with ETA every progress_interval_s
merge                             every part -> --out (one atomic write); the summary counts failures
                                  (error rows: the video could not be read; the run goes on, exit 0)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline import storage
from pipeline.config import config_from_dict
from pipeline.errors import InputError
from pipeline.loading.raw_views import ViewSettings
from tdn.evaluation.model_source import LoadedModel, recipe_sizes
from tdn.evaluation.protocol import EvalConfig, EvalProtocol, protocol_for
from tdn.model.gradcam import pick_layer
from tdn.model.networks import ModelConfig, too_small_for
from tdn.prediction.config import PredictConfig
from tdn.prediction.output import PredictionRow, format_of
from tdn.prediction.replica import top_k
from tdn.prediction.scoring import PredictSpec, VideoResult
from tdn.prediction.sources import VideoInput

Log = Callable[[str], None]


@dataclass(frozen=True)
class PredictPlan:
    """Everything resolved once on the driver: how videos are viewed and scored, what rows record."""

    spec: PredictSpec
    protocol: EvalProtocol
    overrides: tuple[str, ...]  # "input_size 64 (recipe 56)", one per flag that overrides the recipe
    model: str  # the model URI
    model_version: str


@dataclass
class Part:
    index: int
    videos: list[VideoInput]
    uri: str  # "" without --out
    done: bool = False
    rows: list[PredictionRow] = field(default_factory=list)


@dataclass(frozen=True)
class PredictSummary:
    videos: int
    failed: int  # error rows (videos that could not be read)
    parts: int
    parts_already_done: int
    seconds: float
    videos_per_s: float  # videos predicted in this run / its seconds
    engine: str
    out: str
    rows: tuple[PredictionRow, ...] = ()  # without --out (a few videos): the rows for the table


def plan_prediction(cfg: PredictConfig, loaded: LoadedModel) -> PredictPlan:
    """The protocol, sizes and spec: flags > the model's recipe > the protocol's defaults."""
    recipe = loaded.recipe
    names = tuple(recipe.class_names or loaded.class_names)
    name = cfg.protocol or recipe.protocol
    protocol = protocol_for(
        EvalConfig(protocol=name, input_size=cfg.input_size, short_side=cfg.short_side), recipe_sizes(recipe)
    )
    overrides = []
    if cfg.protocol and cfg.protocol != recipe.protocol:
        overrides.append(f"protocol {cfg.protocol} (recipe {recipe.protocol})")
    for flag, given, own in (
        ("input_size", cfg.input_size, recipe.input_size),
        ("short_side", cfg.short_side, recipe.short_side),
    ):
        if given and given != own:
            overrides.append(f"{flag} {given} (recipe {own or 'not recorded'})")
    explain_class = -1
    if cfg.explain_class:
        if cfg.explain_class not in names:
            raise InputError(
                f"--explain-class {cfg.explain_class!r}: the model's classes are {', '.join(names[:20])}"
            )
        explain_class = names.index(cfg.explain_class)
    too_small = too_small_for(config_from_dict(ModelConfig, loaded.model_config), protocol.view_side)
    if too_small:
        raise InputError(too_small)
    segments = int(loaded.model_config.get("num_segments", recipe.num_segments))
    views = ViewSettings(
        segments,
        protocol.clips,
        protocol.crops,
        protocol.input_size,
        protocol.short_side,
        cfg.seed,
        max(1, int(cfg.cpus_per_replica)),
    )
    spec = PredictSpec(
        views,
        recipe.mean,
        recipe.std,
        names,
        top_k=min(cfg.top_k, int(loaded.model_config.get("num_classes", cfg.top_k))),
        batch_size=cfg.batch_size,
        features=cfg.features,
        explain_dir=cfg.explain,
        explain_class=explain_class,
        explain_layer=pick_layer(protocol.view_side) if cfg.explain_layer == "auto" else cfg.explain_layer,
        model_name=loaded.model_id,
    )
    return PredictPlan(spec, protocol, tuple(overrides), loaded.model_id, loaded.model_version)


def plan_parts(videos: Sequence[VideoInput], plan: PredictPlan, cfg: PredictConfig) -> list[Part]:
    """Videos cut into parts in order; a part whose file exists (same fingerprint) is done."""
    n = cfg.videos_per_part
    parts = []
    for k in range(0, max(len(videos), 1), n):
        chunk = list(videos[k : k + n])
        uri = ""
        if cfg.out:
            fingerprint = part_fingerprint(chunk, plan)
            ext = format_of(cfg.out)
            uri = storage.join(cfg.out + ".parts", f"part-{k // n:06d}-{fingerprint[:16]}.{ext}")
        parts.append(Part(k // n, chunk, uri, done=bool(uri) and storage.exists(uri)))
    return parts


def part_fingerprint(videos: Sequence[VideoInput], plan: PredictPlan) -> str:
    """sha256 of what decides a part's rows: its videos, the model, the views and the columns."""
    spec = plan.spec
    described = {
        "videos": [[v.video, v.uri] for v in videos],
        "model": [plan.model, plan.model_version],
        "views": [spec.views.num_segments, spec.views.clips, spec.views.crops, spec.views.input_size],
        "short_side": spec.views.short_side,
        "seed": spec.views.seed,
        "norm": [spec.mean, spec.std],
        "columns": [spec.top_k, spec.features, list(plan.overrides)],
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Answer:
    """One video's result as replicas return it: its top-k class indices and probabilities, or its error."""

    video: str
    error: str = ""
    indices: tuple[int, ...] = ()
    probs: tuple[float, ...] = ()
    views: int = 0
    features: np.ndarray | None = None


def to_row(plan: PredictPlan, answer: Answer) -> PredictionRow:
    """The output row: class names for the indices, the model and protocol columns."""
    names, p, ok = plan.spec.class_names, plan.protocol, not answer.error
    return PredictionRow(
        video=answer.video,
        labels=tuple(names[i] if i < len(names) else str(i) for i in answer.indices if i >= 0) if ok else (),
        probs=tuple(float(v) for v in answer.probs) if ok else (),
        model=plan.model,
        model_version=plan.model_version,
        protocol=p.name,
        views=answer.views,
        input_size=p.input_size,
        short_side=p.short_side,
        overrides="; ".join(plan.overrides),
        error=answer.error,
        features=tuple(float(v) for v in answer.features) if answer.features is not None and ok else None,
    )


def result_row(plan: PredictPlan, r: VideoResult) -> PredictionRow:
    if r.probs is None:
        return to_row(plan, Answer(r.video.video, r.error))
    idx = top_k(r.probs, plan.spec.top_k)
    answer = Answer(
        r.video.video,
        "",
        tuple(int(i) for i in idx),
        tuple(float(v) for v in r.probs[idx]),
        r.views,
        r.features,
    )
    return to_row(plan, answer)
