"""Typed configs: YAML presets, dotted flags, unknown keys rejected by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from pipeline.config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    flatten,
    load_config,
)


@dataclass
class Optim:
    lr: float = 0.01
    steps: list[int] = field(default_factory=lambda: [30, 45])
    schedule: Literal["step", "cosine"] = "step"


@dataclass
class Job:
    name: str = "run"
    epochs: int = 10
    amp: bool = False
    pretrained: str | None = None
    fusion: tuple[float, float] | None = None
    optim: Optim = field(default_factory=Optim)


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("name: k400\nepochs: 3\noptim:\n  lr: 0.02\n  steps: [1, 2]\n")
    cfg = load_config(Job, path, ["optim.schedule=cosine", "amp=true", "fusion=[0.75, 0.25]"])
    assert cfg.name == "k400" and cfg.epochs == 3 and cfg.amp is True
    assert cfg.optim == Optim(lr=0.02, steps=[1, 2], schedule="cosine")
    assert cfg.fusion == (0.75, 0.25)
    assert config_from_dict(Job, config_to_dict(cfg)) == cfg
    assert flatten(config_to_dict(cfg))["optim.lr"] == 0.02


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key optim\.lrr"):
        load_config(Job, path)
    with pytest.raises(ConfigError, match="unknown key epochz"):
        load_config(Job, None, ["epochz=3"])


def test_bad_values_are_named():
    with pytest.raises(ConfigError, match="optim.schedule"):
        load_config(Job, None, ["optim.schedule=linear"])
    with pytest.raises(ConfigError, match="epochs"):
        load_config(Job, None, ["epochs=three"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(Job, "/nonexistent.yaml")


def test_every_preset_in_jobs_configs_loads(repo_root):
    """Each YAML preset names its config class in a leading comment '# config: module:Class'."""
    import importlib

    presets = sorted((repo_root / "jobs" / "configs").glob("*.yaml"))
    for preset in presets:
        first = preset.read_text().splitlines()[0]
        assert first.startswith("# config: "), f"{preset.name} must start with '# config: module:Class'"
        module, cls = first[len("# config: ") :].strip().split(":")
        load_config(getattr(importlib.import_module(module), cls), preset)
