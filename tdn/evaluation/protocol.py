"""The paper's evaluation protocols and ``EvalConfig``: how one evaluation runs.

    ssv1x1     1 clip x 1 centre crop 224 at short side 256 (Something-Something, Table 2)
    k400_10x3  10 clips x 3 crops of 256 at short side 256 (Kinetics, Table 3)

The clip count comes from the shards (sampled when they were written); evaluation checks it matches.
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
    """How to evaluate. ``clips`` / ``input_size`` / ``short_side`` 0 = the protocol's; tests shrink them."""

    protocol: Protocol = "ssv1x1"
    clips: int = 0
    input_size: int = 0
    short_side: int = 0
    replicas: int = 1
    batch_size: int = 8
    device: Literal["auto", "cpu", "cuda"] = "auto"
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
