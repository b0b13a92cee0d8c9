"""The recipe travels with the model (issue 24 item 2): written by save_checkpoint, derived for older
checkpoints, read back by evaluation's model loader, and put into the logged model's MLmodel metadata."""

from __future__ import annotations

import pytest
import torch

from pipeline.config import ConfigError, config_to_dict
from pipeline.loading.config import LoaderConfig
from pipeline.loading.transforms import IMAGENET_MEAN, IMAGENET_STD
from tdn.checkpoints.project import TrainingState, load_checkpoint, save_checkpoint
from tdn.checkpoints.recipe import RECIPE_KEY, Recipe, recipe_of
from tdn.evaluation.model_source import ModelSource, load_model
from tdn.evaluation.protocol import EvalConfig, TrainedSizes, protocol_for
from tdn.model.networks import ModelConfig, build_model_from_config
from tdn.training.config import TrainConfig

TINY = ModelConfig(arch="resnet18", num_classes=3, num_segments=4, width=0.25, dropout=0.0, variant="tsn")
CLASSES = ["a", "b", "c"]


def _training_checkpoint(path: str) -> None:
    train = TrainConfig(model=TINY, loader=LoaderConfig(input_size=48, eval_short_side=56))
    state = TrainingState(epoch=1, step=3, train_config=config_to_dict(train))
    save_checkpoint(path, build_model_from_config(TINY), TINY, CLASSES, state)


def test_training_checkpoint_stores_its_recipe_and_evaluation_reads_it(tmp_path):
    path = str(tmp_path / "c.pt")
    _training_checkpoint(path)
    stored = torch.load(path, weights_only=True)[RECIPE_KEY]
    assert stored == {
        "arch": "resnet18",
        "variant": "tsn",
        "num_segments": 4,
        "window": 5,
        "protocol": "ssv1x1",
        "input_size": 48,
        "short_side": 56,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "class_names": CLASSES,
    }
    loaded = load_model(ModelSource(uri=path))
    assert loaded.recipe.origin == "stored" and loaded.recipe.class_names == tuple(CLASSES)
    assert loaded.trained == TrainedSizes(48, 56)


def test_a_checkpoint_folder_is_read_through_its_checkpoint_pt(tmp_path):
    _training_checkpoint(str(tmp_path / "checkpoint.pt"))
    assert load_model(ModelSource(uri=str(tmp_path))).trained == TrainedSizes(48, 56)


def test_older_checkpoints_derive_the_recipe_from_their_training_config(tmp_path):
    path = str(tmp_path / "old.pt")
    _training_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    del ckpt[RECIPE_KEY]  # as written before the recipe existed
    torch.save(ckpt, path)
    recipe = recipe_of(load_checkpoint(path))
    assert recipe.origin == "train_config"
    assert (recipe.input_size, recipe.short_side, recipe.num_segments, recipe.variant) == (48, 56, 4, "tsn")
    assert load_model(ModelSource(uri=path)).trained == TrainedSizes(48, 56)
    # no training config either (a bare save, an imported official model): sizes not recorded
    del ckpt["train_config"]
    bare = recipe_of(ckpt)
    assert bare.origin == "model_config" and not bare.sizes_known and bare.class_names == tuple(CLASSES)


def test_sizes_resolve_flags_over_the_recipe_over_the_protocol():
    recipe = TrainedSizes(48, 56)
    own = protocol_for(EvalConfig(), recipe)
    assert (own.input_size, own.short_side, own.sizes_from, own.mismatch) == (48, 56, "checkpoint", "")
    flagged = protocol_for(EvalConfig(input_size=64), recipe)
    assert (
        flagged.input_size == 64
        and flagged.sizes_from == "user"
        and "trained at input size 48" in flagged.mismatch
    )
    unknown = protocol_for(EvalConfig(protocol="k400_10x3"), TrainedSizes())
    assert (unknown.clips, unknown.crops, unknown.input_size, unknown.short_side) == (10, 3, 256, 256)


def test_a_malformed_recipe_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"x\.pt: recipe: .*unknown key colour"):
        Recipe.from_dict({"arch": "r", "variant": "tdn", "num_segments": 8, "colour": 1}, "x.pt")
    with pytest.raises(ValueError, match="num_segments"):
        Recipe(arch="r", variant="tdn", num_segments=0)
