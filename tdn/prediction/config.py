"""What a prediction run is asked to do (``python -m jobs.predict``): ``PredictConfig``, one flag per field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tdn.evaluation.model_source import ModelSource

Engine = Literal["auto", "local", "ray"]


@dataclass
class PredictConfig:
    """Which videos, which model, how they are viewed and scored, where the answers go."""

    # videos, folders (recursive), globs, s3:// prefixes, or .txt / .csv lists of paths (the SOURCE arguments)
    sources: list[str] = field(default_factory=list)
    model: ModelSource = field(default_factory=ModelSource)
    protocol: Literal["", "ssv1x1", "k400_10x3"] = ""  # "" = the model's recipe (1 centre clip x centre crop)
    input_size: int = 0  # crop side; 0 = the model's recipe, else the protocol's
    short_side: int = (
        0  # frames resized to this shorter side first; 0 = the model's recipe, else the protocol's
    )
    top_k: int = 5  # labels and probabilities per video
    out: str = ""  # .csv, .jsonl or .parquet (local or s3://); "" = the table on stdout only
    features: bool = False  # add the pooled clip embedding (the classifier's input) to each row
    explain: str = ""  # folder for Grad-CAM maps (PNG strip, cam.npy, cam.json per video); "" = none
    explain_class: str = ""  # class to explain (a name); "" = each video's top-1
    # stage whose activations and gradients make the map; auto: layer4 unless its map of the crop has fewer
    # than 7 cells a side (then the deepest that has: layer3 at 112 px, layer2 at 56; tdn/model/gradcam.py)
    explain_layer: Literal["auto", "layer1", "layer2", "layer3", "layer4"] = "auto"
    # "auto": in this process up to local_max_videos videos, else Ray Data batch inference
    engine: Engine = "auto"
    local_max_videos: int = 32  # auto engine: more videos than this run on Ray
    replicas: int = 1  # model replicas (Ray actors), each decoding its videos with cpus_per_replica threads
    batch_size: int = 8  # videos per replica call (their views go through the model together)
    cpus_per_replica: float = 1.0  # also the replica's decode and torch threads
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when the replica has a GPU
    videos_per_part: int = 256  # videos per output part (written atomically; a re-run skips finished parts)
    seed: int = 0  # sampling seed of multi-clip protocols (as the shard job's)
    progress_interval_s: float = 10.0  # seconds between progress lines
    table_max_videos: int = 20  # print the top-5 table on stdout for this many videos or fewer
    address: str = ""  # Ray cluster; empty: RAY_ADDRESS or a local Ray
    tracking_uri: str = (
        ""  # MLflow (models:/ URIs); empty: MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db
    )

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.batch_size < 1 or self.replicas < 1 or self.videos_per_part < 1:
            raise ValueError("top_k, batch_size, replicas and videos_per_part must be >= 1")
        if self.cpus_per_replica <= 0 or self.input_size < 0 or self.short_side < 0:
            raise ValueError("cpus_per_replica must be > 0, input_size and short_side >= 0")
        if self.out and not self.out.lower().endswith((".csv", ".jsonl", ".parquet")):
            raise ValueError(f"--out {self.out}: the file must end in .csv, .jsonl or .parquet")
