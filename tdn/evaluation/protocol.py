"""The paper's evaluation protocols and ``EvalConfig``: how one evaluation runs.

    ssv1x1     1 clip x 1 centre crop 224 at short side 256 (Something-Something, Table 2)
    k400_10x3  10 clips x 3 crops of 256 at short side 256 (Kinetics, Table 3)

The clip count comes from the shards (sampled when they were written); evaluation checks it matches.
Input size and short side are the model's own unless given (``input_sizes``): a model trained on crops of
``loader.input_size`` with ``loader.eval_short_side`` is evaluated at that centre crop (1 crop) or at crops
of that short side (3 crops), as the paper's 224/256 models are at 224 or 256. Sizes given that differ from
the model's are used, logged as a warning and recorded with the result (``size_mismatch``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Protocol = Literal["ssv1x1", "k400_10x3"]

# protocol -> (clips, crops, input size, short side)
PROTOCOLS: dict[str, tuple[int, int, int, int]] = {
    "ssv1x1": (1, 1, 224, 256),
    "k400_10x3": (10, 3, 256, 256),
}


@dataclass
class EvalConfig:
    """How to evaluate. ``clips`` 0 = the protocol's; ``input_size`` / ``short_side`` 0 = the model's (its
    checkpoint's training config), else the protocol's (``input_sizes``)."""

    protocol: Protocol = "ssv1x1"  # the paper's test protocol: clips x crops and input size
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
    split_number: int = 0  # recorded with the result (UCF101/HMDB51 split 1..3)
    pretrain: str = ""  # recorded with the result (Table 4's "Pretrain" column)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; known: {sorted(PROTOCOLS)}")
        if self.replicas < 1 or self.batch_size < 1 or self.cpus_per_replica <= 0:
            raise ValueError("replicas and batch_size must be >= 1, cpus_per_replica > 0")

    def resolved(self) -> tuple[int, int, int, int]:
        """(clips, crops, input size, short side)."""
        clips, crops, size, short = PROTOCOLS[self.protocol]
        return self.clips or clips, crops, self.input_size or size, self.short_side or short


@dataclass(frozen=True)
class InputSizes:
    """The input size and short side one evaluation uses, and where they came from."""

    input_size: int
    short_side: int
    sizes_from: Literal["user", "checkpoint", "protocol"]
    trained_input_size: int = 0  # the model's training crop (0: its checkpoint does not say)
    trained_short_side: int = 0  # the model's eval short side in training (0: its checkpoint does not say)
    mismatch: str = ""  # one line when the sizes given differ from the model's; "" otherwise


def input_sizes(cfg: EvalConfig, trained_input_size: int = 0, trained_short_side: int = 0) -> InputSizes:
    """Sizes given in ``cfg`` win; the ones left 0 come from the model's training config when its checkpoint
    records it (``trained_*``), else from the protocol. 3 crops cover the short side: their size is it."""
    _, crops, size, short = PROTOCOLS[cfg.protocol]
    trained = trained_input_size > 0 and trained_short_side > 0
    if trained:
        short = trained_short_side
        size = trained_input_size if crops == 1 else trained_short_side
    got_short = cfg.short_side or short
    got_size = cfg.input_size or (size if crops == 1 else got_short)
    given = bool(cfg.input_size or cfg.short_side)
    mismatch = ""
    if trained and (got_size, got_short) != (size, short):
        mismatch = (
            f"evaluating at input size {got_size}, short side {got_short}, but the model was trained at "
            f"input size {trained_input_size} (eval short side {trained_short_side}): its {cfg.protocol} "
            f"sizes are {size} / {short}"
        )
    source: Literal["user", "checkpoint", "protocol"] = "checkpoint" if trained else "protocol"
    if given:
        source = "user"
    return InputSizes(got_size, got_short, source, trained_input_size if trained else 0,
                      trained_short_side if trained else 0, mismatch)  # fmt: skip
