"""The recipe that travels with a model: what its input must look like, stored beside its weights.

    Recipe: arch, variant, segments T (of 5-frame windows), the test protocol (clips x crops), the eval
            short side and crop size, the normalisation mean/std and the class names

    save_checkpoint (project.py) --Recipe.to_dict()--> checkpoint["recipe"]
    registry / model_export.py   --Recipe.to_dict()--> the logged model's MLmodel metadata["recipe"]
    recipe_of(checkpoint dict)   --> Recipe: the stored "recipe" key, else derived from what older checkpoints
                                     carry (model_config, class_names, train_config.loader), ``origin`` says
    readers: evaluation (TrainedSizes through ``trained_sizes``), predict (sampling, sizes, normalisation)

Sizes 0 mean "not recorded" (a checkpoint without a training config: official weights, a bare save): readers
then use the protocol's (224 / 256), as timm's ``resolve_data_config`` falls back to defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.config import config_from_dict
from pipeline.loading.transforms import IMAGENET_MEAN, IMAGENET_STD

# The paper's test protocols (tdn/evaluation/protocol.py PROTOCOLS holds their clips, crops and sizes).
ProtocolName = Literal["ssv1x1", "k400_10x3"]
RecipeOrigin = Literal["stored", "train_config", "model_config"]
RECIPE_KEY = "recipe"


@dataclass(frozen=True)
class Recipe:
    """What a model expects of its input. Stored as a dict under ``RECIPE_KEY``; ``origin`` is not stored."""

    arch: str  # backbone, e.g. resnet50
    variant: str  # tdn | tsn | tconv | stdm | ltdm
    num_segments: int  # segments T per clip, each a window of ``window`` consecutive frames
    window: int = 5  # frames per segment (the centre one feeds the RGB stream)
    protocol: ProtocolName = (
        "ssv1x1"  # default test protocol: 1 centre clip x centre crop (training's validation)
    )
    input_size: int = 0  # crop side in pixels (the training crop); 0 = not recorded
    short_side: int = 0  # frames resized to this shorter side before the crop; 0 = not recorded
    mean: tuple[float, float, float] = IMAGENET_MEAN  # per-channel mean of RGB in [0, 1]
    std: tuple[float, float, float] = IMAGENET_STD  # per-channel std
    class_names: tuple[str, ...] = ()  # index order; () = unnamed classes
    origin: RecipeOrigin = dataclasses.field(default="stored", compare=False)

    def __post_init__(self) -> None:
        if self.num_segments < 1 or self.window < 1 or self.input_size < 0 or self.short_side < 0:
            raise ValueError(
                f"num_segments and window must be >= 1, sizes >= 0; got {self.num_segments}, {self.window}, "
                f"{self.input_size}, {self.short_side}"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values (std > 0), got {self.mean}, {self.std}")

    @property
    def sizes_known(self) -> bool:
        return self.input_size > 0 and self.short_side > 0

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (a checkpoint is read with ``torch.load(weights_only=True)``); no ``origin``."""
        data = dataclasses.asdict(self)
        data.pop("origin")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> Recipe:
        """ConfigError (a ValueError) naming ``where`` and the key for unknown keys or bad values."""
        try:
            return config_from_dict(cls, {k: v for k, v in data.items() if k != "origin"})
        except ValueError as exc:
            raise type(exc)(f"{where}: recipe: {exc}") from exc

    def describe(self) -> str:
        """One line: ``tdn resnet18, 4 x 5 frames, ssv1x1, crop 56 of short side 64, 4 classes``."""
        sizes = (
            f"crop {self.input_size} of short side {self.short_side}"
            if self.sizes_known
            else "sizes not recorded"
        )
        classes = f"{len(self.class_names)} classes" if self.class_names else "unnamed classes"
        return f"{self.variant} {self.arch}, {self.num_segments} x {self.window} frames, {self.protocol}, {sizes}, {classes}"


def derive_recipe(
    model_config: Mapping[str, Any], class_names: Sequence[str], train_config: Mapping[str, Any] | None
) -> Recipe:
    """The recipe of a model from its config, classes and (when it has one) training config: the training
    crop (``loader.input_size``) and eval short side (``loader.eval_short_side``), else sizes 0."""
    loader = train_config.get("loader") if isinstance(train_config, Mapping) else None
    size = loader.get("input_size") if isinstance(loader, Mapping) else None
    short = loader.get("eval_short_side") if isinstance(loader, Mapping) else None
    known = isinstance(size, int) and isinstance(short, int) and size > 0 and short > 0
    return Recipe(
        arch=str(model_config.get("arch", "")),
        variant=str(model_config.get("variant", "tdn")),
        num_segments=int(model_config.get("num_segments", 8)),
        input_size=int(size) if known else 0,  # type: ignore[arg-type]
        short_side=int(short) if known else 0,  # type: ignore[arg-type]
        class_names=tuple(str(n) for n in class_names),
        origin="train_config" if known else "model_config",
    )


def recipe_of(ckpt: Mapping[str, Any], where: str = "checkpoint") -> Recipe:
    """A project checkpoint's recipe: its stored ``recipe`` key, else derived (``derive_recipe``) from the
    keys older checkpoints carry."""
    stored = ckpt.get(RECIPE_KEY)
    if isinstance(stored, Mapping):
        return Recipe.from_dict(stored, where)
    train_config = ckpt.get("train_config")
    return derive_recipe(
        ckpt.get("model_config") or {},
        list(ckpt.get("class_names") or []),
        train_config if isinstance(train_config, Mapping) else None,
    )
