"""The paper's evaluation protocols, ``EvalConfig`` (how one evaluation runs), and ``resolve_protocol``, which
turns them, the model and the shards into the one ``EvalProtocol`` every stage of an evaluation receives.

    ssv1x1     1 clip x 1 centre crop 224 at short side 256 (Something-Something, Table 2)
    k400_10x3  10 clips x 3 crops of 256 at short side 256 (Kinetics, Table 3)

    EvalConfig     flags / YAML: protocol, clips, input_size, short_side (0 = not given)  ─┐
    TrainedSizes   the model's recipe (tdn/checkpoints/recipe.py): its input size and      ├ resolve_protocol
                   eval short side (0 = the checkpoint does not say)                       │  (once, in
    EvalSplit      index.json: the clips per video the shards were written with           ─┘   evaluate())
      ▼ EvalProtocol (frozen): name, clips, crops, input_size, short_side, sizes_from, trained, mismatch

Sizes, as timm's ``resolve_data_config`` (arguments > the model's pretrained config > defaults): the ones
given win; else the model's own, a centre crop of its training crop (1 crop) or crops of its eval short side
(3 crops: the crops cover the short side, so their size is it), as the paper's 224/256 models are evaluated
at 224 or 256; else the protocol's. Sizes given that differ from the model's are used, warned about and
recorded with the result (``mismatch``). Clips: the one given, else the protocol's; the shards must hold that
many per video (they were sampled when written), else a one-line ``InputError`` naming the split folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from pipeline.errors import InputError
from pipeline.loading.transforms import eval_output_size
from tdn.checkpoints.recipe import ProtocolName
from tdn.evaluation.split import EvalSplit

SizesFrom = Literal["user", "checkpoint", "protocol"]


@dataclass(frozen=True)
class ProtocolSpec:
    """One of the paper's test protocols: views per video and the sizes it was defined at."""

    name: ProtocolName
    clips: int  # clips per video (sampled by the shard job)
    crops: Literal[1, 3]  # 1: a centre crop of input_size; 3: crops of short_side covering the short side
    input_size: int  # crop side in pixels
    short_side: int  # frames resized to this shorter side before cropping


PROTOCOLS: Mapping[ProtocolName, ProtocolSpec] = MappingProxyType(
    {
        "ssv1x1": ProtocolSpec("ssv1x1", clips=1, crops=1, input_size=224, short_side=256),
        "k400_10x3": ProtocolSpec("k400_10x3", clips=10, crops=3, input_size=256, short_side=256),
    }
)


@dataclass
class EvalConfig:
    """How to evaluate. ``clips`` 0 = the protocol's; ``input_size`` / ``short_side`` 0 = the model's (its
    checkpoint's training config), else the protocol's (``resolve_protocol``)."""

    protocol: ProtocolName = "ssv1x1"  # the paper's test protocol: clips x crops and input size
    clips: int = 0  # clips per video; 0 = the protocol's
    input_size: int = 0  # crop side in pixels; 0 = the model's (its training config), else the protocol's
    short_side: int = 0  # frames resized to this shorter side first; 0 = the model's, else the protocol's
    # Defaults fit a CPU test run; on GPUs the presets (jobs/configs/eval_*.yaml) use one replica per GPU:
    # K400 10x3 val is 594k views, ~0.08 GPU-h at an assumed 2,125 views/s (jobs/capacity.py): 35 s on 8 GPUs.
    # batch_size counts videos: at 10x3 a batch of 8 is 240 views (1,920 frames), enough to fill a GPU.
    replicas: int = 1  # model replicas (Ray actors) scoring in parallel
    batch_size: int = 8  # videos per forward pass of a replica
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when the replica has a GPU
    cpus_per_replica: float = 1.0  # also the replica's torch and JPEG decoding threads
    loader_workers: int = 0  # DataLoader processes per replica (0: decode in the replica; more on GPU nodes)
    # "ray": the actor pool on the cluster; "local": score in this process (small splits, no actor start-up)
    engine: Literal["ray", "local"] = "ray"
    # report.html shows Grad-CAM strips of one video of each of this many most-confused pairs (0: none);
    # one forward and backward pass per strip on the driver's CPU, after scoring
    report_cams: int = 4
    split_number: int = 0  # recorded with the result (UCF101/HMDB51 split 1..3)
    pretrain: str = ""  # recorded with the result (Table 4's "Pretrain" column)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; known: {sorted(PROTOCOLS)}")
        if self.replicas < 1 or self.batch_size < 1 or self.cpus_per_replica <= 0:
            raise ValueError("replicas and batch_size must be >= 1, cpus_per_replica > 0")

    @property
    def sizes_given(self) -> bool:
        """An input size or short side was given (flags win over the model's own sizes)."""
        return bool(self.input_size or self.short_side)


@dataclass(frozen=True)
class TrainedSizes:
    """The sizes a model was trained at, as its checkpoint's training config records them: the training crop
    (``loader.input_size``) and the eval short side (``loader.eval_short_side``); 0 when it does not say."""

    input_size: int = 0
    short_side: int = 0

    @property
    def known(self) -> bool:
        return self.input_size > 0 and self.short_side > 0


@dataclass(frozen=True)
class EvalProtocol:
    """How one evaluation runs, resolved once (``resolve_protocol``) and handed to every stage: the loader's
    crops, the scoring's views per video, the result row and the MLflow run's params."""

    name: ProtocolName
    clips: int  # clips per video, as the shards hold them
    crops: Literal[1, 3]
    input_size: int  # the crop side the model sees
    short_side: int  # frames resized to this shorter side before cropping
    sizes_from: SizesFrom  # "user" (given), "checkpoint" (the model's training config), "protocol"
    trained: TrainedSizes  # the model's own sizes; (0, 0) when its checkpoint does not say
    mismatch: str = ""  # one line when the sizes given differ from the model's; "" otherwise

    @property
    def view_side(self) -> int:
        """The side (px) of each view the model sees: the crop, or the short side when 3 crops cover it."""
        return eval_output_size(self.input_size, self.short_side, self.crops)

    @property
    def views_per_video(self) -> int:
        """Views each video must be scored with: clips x crops."""
        return self.clips * self.crops


def resolve_protocol(cfg: EvalConfig, split: EvalSplit, trained: TrainedSizes) -> EvalProtocol:
    """Flags in ``cfg`` > the model's recipe (``trained``) > ``PROTOCOLS[cfg.protocol]``; the shards of
    ``split`` must hold the resolved clips per video (``InputError`` naming the split folder otherwise)."""
    spec = PROTOCOLS[cfg.protocol]
    clips = cfg.clips or spec.clips
    held = split.index.views_per_video
    if held != clips:
        given = f" (eval.clips {cfg.clips})" if cfg.clips else ""
        raise InputError(
            f"{split.folder}: the shards hold {held} clip(s) per video, protocol {spec.name} needs {clips}{given}; "
            "write the evaluation shards with that clip count"
        )
    return protocol_for(cfg, trained)


def protocol_for(cfg: EvalConfig, trained: TrainedSizes) -> EvalProtocol:
    """The protocol's clips x crops and the sizes (flags > ``trained`` > the protocol's), with the mismatch
    line when flags differ from the model's own; no shards involved (predict samples raw videos itself)."""
    spec = PROTOCOLS[cfg.protocol]
    clips = cfg.clips or spec.clips
    if not trained.known:
        trained = TrainedSizes()
    # the model's own sizes under this protocol (3 crops cover the short side: their size is it)
    own_short = trained.short_side if trained.known else spec.short_side
    own_size = trained.input_size if trained.known else spec.input_size
    if spec.crops == 3:
        own_size = own_short
    short = cfg.short_side or own_short
    size = cfg.input_size or (own_size if spec.crops == 1 else short)
    mismatch = ""
    if trained.known and (size, short) != (own_size, own_short):
        mismatch = (
            f"evaluating at input size {size}, short side {short}, but the model was trained at input size "
            f"{trained.input_size} (eval short side {trained.short_side}): its {spec.name} sizes are "
            f"{own_size} / {own_short}"
        )
    sizes_from: SizesFrom = "checkpoint" if trained.known else "protocol"
    if cfg.sizes_given:
        sizes_from = "user"
    return EvalProtocol(spec.name, clips, spec.crops, size, short, sizes_from, trained, mismatch)
