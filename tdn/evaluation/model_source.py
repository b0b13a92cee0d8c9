"""Which weights an evaluation runs, resolved to a ``LoadedModel`` (weights + identity) once, on the driver.

ModelSource.uri       project checkpoint (path or s3://)   -> checkpoints.project.load_model_checkpoint
                      models:/name/<version>, models:/name@alias -> registry version -> its checkpoint.pt
ModelSource.official  checkpoint of the released TDN code -> checkpoints.official.load_official_checkpoint
  ▼
LoadedModel: model_config (dict), state_dict, class_names, model_id, registered name/version/run id and
             the version's MLflow logged model id, and the model's recipe (tdn/checkpoints/recipe.py: segments,
             protocol, input size / short side, mean/std, class names; stored in the checkpoint, else derived
             from its training config); ``trained``: the recipe's sizes, as evaluation reads them
(what evaluation replicas receive through Ray's object store)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline import storage
from pipeline.config import config_to_dict
from tdn.checkpoints.official import load_official_checkpoint
from tdn.checkpoints.project import load_model_checkpoint
from tdn.checkpoints.recipe import Recipe, derive_recipe, recipe_of
from tdn.evaluation.protocol import TrainedSizes
from tdn.model.networks import ModelConfig
from tdn.tracking.mlflow_store import tracking_client, tracking_off, version_model_id
from tdn.tracking.registry import download_checkpoint, resolve_model_version

CHECKPOINT_FILE = "checkpoint.pt"  # what a run's checkpoint folder holds (tdn/training/checkpointing.py)


@dataclass
class ModelSource:
    """Which weights to evaluate: exactly one of ``uri`` (project checkpoint path / s3:// URI /
    ``models:/name/version`` / ``models:/name@alias``) or ``official`` (a checkpoint saved by the released
    TDN code, which does not record its shape: give arch, num_segments, num_classes)."""

    uri: str = (
        ""  # project checkpoint (file or run folder, s3://) or models:/name/version, models:/name@alias
    )
    official: str = ""  # a checkpoint file saved by the released TDN code (instead of uri)
    arch: Literal["resnet50", "resnet101"] = "resnet50"  # official only: its backbone
    num_segments: int = 8  # official only: segments T it was trained with
    num_classes: int = 400  # official only: classes of its classifier

    def check(self) -> None:
        if bool(self.uri) == bool(self.official):
            raise ValueError("give exactly one of model.uri (checkpoint or models:/...) and model.official")

    def check_tracking(self, tracking_uri: str) -> None:
        """A registered model is read from MLflow: ``--tracking-uri none`` cannot load it."""
        if self.uri.startswith("models:/") and tracking_off(tracking_uri):
            raise ValueError(
                f"--model {self.uri} is read from the MLflow registry, and --tracking-uri none has none: give a "
                "tracking URI (empty: the local store) or a checkpoint file"
            )


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
    # what its input must look like (segments, protocol, sizes, mean/std, classes); sizes 0: not recorded
    # (official files, bare checkpoints)
    recipe: Recipe = field(default_factory=lambda: Recipe(arch="", variant="tdn", num_segments=8))
    # the MLflow logged model behind a registered version (its model_id): evaluation metrics carry it so the
    # model's page lists them; "" for checkpoint files and official weights
    logged_model_id: str = ""

    @property
    def trained(self) -> TrainedSizes:
        """Its training crop and eval short side (the recipe's); (0, 0) when the checkpoint does not say."""
        return recipe_sizes(self.recipe)


def recipe_sizes(recipe: Recipe) -> TrainedSizes:
    """The recipe's sizes as evaluation's resolver takes them; (0, 0) when not recorded."""
    return TrainedSizes(recipe.input_size, recipe.short_side) if recipe.sizes_known else TrainedSizes()


def trained_sizes(ckpt: Mapping[str, Any]) -> TrainedSizes:
    """Input size and eval short side of a project checkpoint's recipe (stored, else derived from its
    training config), else (0, 0)."""
    return recipe_sizes(recipe_of(ckpt))


def load_model(source: ModelSource, tracking_uri: str | None = None) -> LoadedModel:
    """Resolve a ModelSource to weights plus identity (registered name/version/run id when it has one)."""
    source.check()
    if source.official:
        model = load_official_checkpoint(
            source.official, source.arch, source.num_segments, source.num_classes
        )
        cfg = ModelConfig(
            arch=source.arch, num_classes=source.num_classes, num_segments=source.num_segments, variant="tdn"
        )
        config = config_to_dict(cfg)
        recipe = derive_recipe(config, [], None)
        return LoadedModel(config, model.state_dict(), [], f"official:{source.official}", recipe=recipe)
    uri = source.uri
    if not uri.startswith("models:/") and storage.is_dir(uri):
        uri = storage.join(uri, CHECKPOINT_FILE)  # a run's checkpoint folder (Ray's epoch_NNNN/)
    if not uri.startswith("models:/"):
        model, ckpt = load_model_checkpoint(uri)
        return LoadedModel(
            ckpt["model_config"],
            model.state_dict(),
            list(ckpt.get("class_names") or []),
            uri,
            recipe=recipe_of(ckpt, uri),
        )

    version = resolve_model_version(uri, tracking_uri)
    mv = tracking_client(tracking_uri).get_model_version(version.name, version.version)
    model, ckpt = load_model_checkpoint(download_checkpoint(version.uri, tracking_uri))
    return LoadedModel(
        ckpt["model_config"],
        model.state_dict(),
        list(ckpt.get("class_names") or []),
        version.uri,
        model_name=version.name,
        model_version=version.version,
        model_run_id=version.run_id,
        recipe=recipe_of(ckpt, version.uri),
        logged_model_id=version_model_id(mv.model_id, mv.source or ""),
    )
