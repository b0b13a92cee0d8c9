"""Models for the evaluation tests: a tiny project checkpoint, and one registered the way training does.

The shards they are evaluated on come from ``pipeline.synthetic.frame_shards`` (render_videos, write_split).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def save_tiny_checkpoint(
    path: Path,
    num_classes: int,
    class_names: Sequence[str],
    variant: str = "tdn",
    num_segments: int = 4,
    seed: int = 0,
) -> str:
    """A freshly initialised ResNet-18 (width 0.25) project checkpoint: accuracy is not the point."""
    import torch

    from tdn.checkpoints.project import save_checkpoint
    from tdn.model.networks import ModelConfig, build_model_from_config

    cfg = ModelConfig(
        arch="resnet18",
        num_classes=num_classes,
        num_segments=num_segments,
        width=0.25,
        variant=variant,
        dropout=0.0,
    )  # type: ignore[arg-type]
    torch.manual_seed(seed)
    save_checkpoint(str(path), build_model_from_config(cfg).eval(), cfg, list(class_names))
    return str(path)


def register_checkpoint_version(tracking_uri: str, ckpt: str, name: str, alias: str = "") -> tuple[str, str]:
    """Register a project checkpoint the way training does (tdn.tracking.registry); returns (version, run id).
    Without the pt2 export (about 10 s of CPU each): evaluation reads the version's checkpoint.pt."""
    from tdn.tracking.mlflow_store import create_run, get_or_create_experiment, tracking_client
    from tdn.tracking.registry import register_checkpoint

    client = tracking_client(tracking_uri)
    exp_id = get_or_create_experiment(client, "eval-test-train")
    run = create_run(client, exp_id, "train", {})
    version = register_checkpoint(
        client, run.run_id, exp_id, ckpt, name, {"val_top1": 0.5}, alias=alias, export=False
    )
    run.finish()
    return version, run.run_id
