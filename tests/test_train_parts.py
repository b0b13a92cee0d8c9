"""The trainer's pieces that need no cluster: RNG state in checkpoints, seeding, checkpoint lookup, starting
weights (ImageNet, fine-tuning) and the config's and CLI's validation (tdn/training/, jobs/train.py)."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch

from pipeline.config import ConfigError, load_config
from tdn.checkpoints.project import CheckpointError, save_checkpoint
from tdn.model.networks import ModelConfig, build_model, build_model_from_config
from tdn.training.checkpointing import init_weights, init_weights_from, resolve_checkpoint
from tdn.training.config import InitConfig, TrainConfig
from tdn.training.rng import rng_state, seed_everything, set_rng_state


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_rng_state_survives_a_weights_only_checkpoint():
    seed_everything(3, 1, 0)
    _draws()
    buf = io.BytesIO()
    torch.save({"rng": rng_state()}, buf)
    expected = _draws()
    buf.seek(0)
    set_rng_state(torch.load(buf, weights_only=True)["rng"])
    assert _draws() == expected


def test_seeding_depends_on_seed_epoch_and_rank():
    seed_everything(0, 2, 1)
    a = _draws()
    seed_everything(0, 2, 1)
    assert _draws() == a
    for other in ((1, 2, 1), (0, 3, 1), (0, 2, 0)):
        seed_everything(*other)
        assert _draws() != a


def test_resolve_checkpoint(tmp_path):
    folder = tmp_path / "checkpoint_000"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(b"x")
    assert resolve_checkpoint(str(folder)) == str(folder / "checkpoint.pt")
    assert resolve_checkpoint(str(folder / "checkpoint.pt")) == str(folder / "checkpoint.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        resolve_checkpoint(str(tmp_path / "missing"))


def test_init_checkpoint_keeps_the_backbone_and_replaces_a_classifier_of_another_size(tmp_path):
    small = dict(arch="resnet18", num_segments=2, width=0.125)
    source_cfg = ModelConfig(num_classes=7, **small)
    source = build_model_from_config(source_cfg)
    path = tmp_path / "k400.pt"
    save_checkpoint(str(path), source, source_cfg, [str(i) for i in range(7)])
    target = build_model_from_config(ModelConfig(num_classes=3, **small))
    head = target.fc.weight.clone()
    init_weights_from(target, str(path))
    for key, value in source.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(target.state_dict()[key], value), key
    assert torch.equal(target.fc.weight, head)
    other = build_model_from_config(ModelConfig(num_classes=3, arch="resnet34", num_segments=2, width=0.125))
    with pytest.raises(CheckpointError, match="does not match"):
        init_weights_from(other, str(path))


def test_init_imagenet_initialises_both_streams(tmp_path):
    # a torchvision-layout file: our TSN model has torchvision's ResNet names
    imagenet = {
        k: torch.randn(v.shape) if v.is_floating_point() else v
        for k, v in build_model("resnet18", 1000, 1, "tsn", width=0.25).state_dict().items()
    }
    path = tmp_path / "r18.pth"
    torch.save(imagenet, path)
    model = build_model_from_config(ModelConfig(arch="resnet18", num_classes=3, num_segments=2, width=0.25))
    init_weights(model, InitConfig(imagenet=str(path)))
    ours = model.state_dict()
    assert torch.equal(ours["layer2.0.conv1.weight"], imagenet["layer2.0.conv1.weight"])
    assert torch.equal(ours["stdm.layers.0.0.conv1.weight"], imagenet["layer1.0.conv1.weight"])
    untouched = build_model_from_config(
        ModelConfig(arch="resnet18", num_classes=3, num_segments=2, width=0.25)
    )
    before = {k: v.clone() for k, v in untouched.state_dict().items()}
    init_weights(untouched, InitConfig())
    assert all(torch.equal(untouched.state_dict()[k], v) for k, v in before.items())


def test_presets_of_the_earlier_layout_name_the_new_keys(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("model:\n  arch: resnet18\n  pretrained: null\n")
    with pytest.raises(ConfigError, match=r"model\.pretrained has moved to init\.imagenet"):
        load_config(TrainConfig, old)
    with pytest.raises(ConfigError, match=r"run\.init_from has moved to init\.checkpoint"):
        load_config(TrainConfig, None, ["run.init_from=k400.pt"])
    with pytest.raises(ConfigError, match="not both"):
        load_config(TrainConfig, None, ["init.imagenet=r50.pth", "init.checkpoint=k400.pt"])


def test_train_config_validation(repo_root):
    with pytest.raises(ConfigError, match="run.workers"):
        load_config(TrainConfig, repo_root / "jobs/configs/synthetic_tiny.yaml", ["run.workers=0"])
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_config(TrainConfig, None, ["optim.lrr=1"])


def test_a_crop_the_model_cannot_take_is_refused_before_the_shards_are_read(repo_root, capsys):
    """A TDN at 32 px would fail in every worker's first step (its L-TDM halves a 1 x 1 map): the driver
    refuses it in one line naming the flag, before data.shards is even looked at; a TSN takes 32 px."""
    from jobs.train import main

    recipe = str(repo_root / "jobs/configs/synthetic_tiny.yaml")
    assert main(["--config", recipe, "--data.shards", "/nowhere", "--loader.input_size", "32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        "train: error: loader.input_size 32: views of 32 px are too small for this model"
    ), err
    args = [
        "--config",
        recipe,
        "--data.shards",
        "/nowhere",
        "--loader.input_size",
        "32",
        "--model.variant",
        "tsn",
    ]
    assert main(args) == 2
    assert "data.shards: /nowhere does not exist" in capsys.readouterr().err


def test_cli_rejects_bad_flags_and_missing_data(repo_root, capsys):
    from jobs.train import main

    assert main(["--optim.lrr", "0.1"]) == 2
    assert "--optim.lrr" in capsys.readouterr().err
    assert main(["--config", str(repo_root / "jobs/configs/synthetic_tiny.yaml")]) == 2
    assert "data.shards" in capsys.readouterr().err
    assert (
        main(
            [
                "--config",
                str(repo_root / "jobs/configs/synthetic_tiny.yaml"),
                "--data.shards",
                "/nowhere",
                "--resume",
                "/nowhere/checkpoint.pt",
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_a_model_with_non_finite_weights_or_scores_is_never_registered(tmp_path):
    from tdn.tracking.registry import RegistrationRefused, check_registrable

    cfg = ModelConfig(arch="resnet18", num_classes=3, num_segments=2, width=0.125)
    model = build_model_from_config(cfg)
    good = str(tmp_path / "good.pt")
    save_checkpoint(good, model, cfg, ["a", "b", "c"])
    check_registrable(good, {"val_top1_pct": 50.0})
    with pytest.raises(RegistrationRefused, match="non-finite score.*val_top1_pct"):
        check_registrable(good, {"val_top1_pct": float("nan")})
    with torch.no_grad():
        model.fc.weight[0, 0] = float("inf")
    bad = str(tmp_path / "bad.pt")
    save_checkpoint(bad, model, cfg, ["a", "b", "c"])
    with pytest.raises(
        RegistrationRefused, match=r"bad\.pt: not registered, fc\.weight holds NaN or infinite"
    ):
        check_registrable(bad, {"val_top1_pct": 50.0})


def test_nan_and_infinite_values_are_refused_wherever_a_config_comes_from():
    from tdn.training.optim import OptimConfig

    with pytest.raises(ConfigError, match=r"^optim\.weight_decay: 'inf' is not a finite number$"):
        load_config(TrainConfig, None, ["optim.weight_decay=inf"])
    with pytest.raises(ConfigError, match=r"optim\.lr: nan is not a finite number"):
        OptimConfig(lr=float("nan"))
