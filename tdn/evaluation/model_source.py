"""Which weights an evaluation runs, resolved to a ``LoadedModel`` (weights + identity) once, on the driver.

ModelSource.uri       project checkpoint (path or s3://)   -> checkpoints.project.load_model_checkpoint
                      models:/name/<version>, models:/name@alias -> registry version -> its checkpoint.pt
ModelSource.official  checkpoint of the released TDN code -> checkpoints.official.load_official_checkpoint
  ▼
LoadedModel: model_config (dict), state_dict, class_names, model_id, registered name/version/run id and
             the version's MLflow logged model id, the input size / short side it was trained at (from the
             checkpoint's training config)
(what evaluation replicas receive through Ray's object store)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal


@dataclass
class ModelSource:
    """Which weights to evaluate: exactly one of ``uri`` (project checkpoint path / s3:// URI /
    ``models:/name/version`` / ``models:/name@alias``) or ``official`` (a checkpoint saved by the released
    TDN code, which does not record its shape: give arch, num_segments, num_classes)."""

    uri: str = ""  # project checkpoint (path, s3://) or models:/name/version, models:/name@alias
    official: str = ""  # a checkpoint file saved by the released TDN code (instead of uri)
    arch: Literal["resnet50", "resnet101"] = "resnet50"  # official only: its backbone
    num_segments: int = 8  # official only: segments T it was trained with
    num_classes: int = 400  # official only: classes of its classifier

    def check(self) -> None:
        if bool(self.uri) == bool(self.official):
            raise ValueError("give exactly one of model.uri (checkpoint or models:/...) and model.official")


@dataclass
class LoadedModel:
    """Weights and identity of the model under evaluation (what replicas receive through the object store)."""

    model_config: dict[str, Any]
    state_dict: dict[str, Any]
    class_names: list[str]
    model_id: str
    model_name: str = ""
    model_version: str = ""
    model_run_id: str = ""
    # its training crop and eval short side (``loader.input_size`` / ``loader.eval_short_side`` of the
    # checkpoint's training config); 0: the checkpoint does not say (official files, bare checkpoints)
    train_input_size: int = 0
    train_short_side: int = 0
    # the MLflow logged model behind a registered version (its model_id): evaluation metrics carry it so the
    # model's page lists them; "" for checkpoint files and official weights
    logged_model_id: str = ""


def trained_sizes(ckpt: Mapping[str, Any]) -> tuple[int, int]:
    """(input size, eval short side) of the training config a project checkpoint carries, else (0, 0)."""
    train_config = ckpt.get("train_config")
    loader = train_config.get("loader") if isinstance(train_config, Mapping) else None
    if not isinstance(loader, Mapping):
        return 0, 0
    size, short = loader.get("input_size"), loader.get("eval_short_side")
    if not isinstance(size, int) or not isinstance(short, int) or size < 1 or short < 1:
        return 0, 0
    return size, short


def load_model(source: ModelSource, tracking_uri: str | None = None) -> LoadedModel:
    """Resolve a ModelSource to weights plus identity (registered name/version/run id when it has one)."""
    from tdn.checkpoints.official import load_official_checkpoint
    from tdn.checkpoints.project import load_model_checkpoint
    from tdn.model.networks import ModelConfig

    source.check()
    if source.official:
        model = load_official_checkpoint(
            source.official, source.arch, source.num_segments, source.num_classes
        )
        cfg = ModelConfig(
            arch=source.arch, num_classes=source.num_classes, num_segments=source.num_segments, variant="tdn"
        )
        from pipeline.config import config_to_dict

        return LoadedModel(config_to_dict(cfg), model.state_dict(), [], f"official:{source.official}")
    uri = source.uri
    if not uri.startswith("models:/"):
        model, ckpt = load_model_checkpoint(uri)
        size, short = trained_sizes(ckpt)
        return LoadedModel(ckpt["model_config"], model.state_dict(), list(ckpt.get("class_names") or []), uri,
                           train_input_size=size, train_short_side=short)  # fmt: skip

    from tdn.tracking.mlflow_store import tracking_client
    from tdn.tracking.registry import download_checkpoint, resolve_model_version

    version = resolve_model_version(uri, tracking_uri)
    mv = tracking_client(tracking_uri).get_model_version(version.name, version.version)
    model, ckpt = load_model_checkpoint(download_checkpoint(version.uri, tracking_uri))
    size, short = trained_sizes(ckpt)
    return LoadedModel(
        ckpt["model_config"],
        model.state_dict(),
        list(ckpt.get("class_names") or []),
        version.uri,
        model_name=version.name,
        model_version=version.version,
        model_run_id=version.run_id,
        train_input_size=size,
        train_short_side=short,
        logged_model_id=version_model_id(mv.model_id, mv.source or ""),
    )


def version_model_id(model_id: str | None, source: str) -> str:
    """The logged model behind a registered version: its ``model_id``, which MLflow 3.17's sqlite/REST stores
    leave empty when reading a version back, else the id in its source ``models:/m-<id>``; "" if neither."""
    if model_id:
        return model_id
    body = source.removeprefix("models:/") if source.startswith("models:/") else ""
    return body if body.startswith("m-") and "/" not in body else ""
