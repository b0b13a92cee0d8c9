"""A tiny TDN trained in this process on clips of one small moving object (pipeline/synthetic/object_clip.py),
with the project's Trainer: the model the Grad-CAM and the raw-vs-shard tests need, one that has learnt
something and looks somewhere.

    object_clips(n, salt)      n clips (the four directions in turn), 20 frames of 80 x 80, with their boxes
    train_object_tdn(path)     ResNet-18 x0.25, T = 4, 200 steps of 8 clips (random windows, TrainSampler),
                               SGD lr 0.02 cosine; saved with a training config whose crop and eval short side
                               are 80, so its recipe says: frames as they are, the whole frame as the crop
    object_tdn (fixture)       trained once per test run (about 45 s of one CPU core; tests/built_once.py)

Measured (16 held-out clips): 94-100 % top-1; Grad-CAM mass inside the object's box 3.2x the box's share of
the frame at layer2 (the stage pick_layer takes at 80 px), against 0.8x for the same network untrained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import config_to_dict
from pipeline.loading.config import LoaderConfig
from pipeline.loading.transforms import normalise_uint8
from pipeline.shards.sampling import CentreSampler, TrainSampler, rng_for
from pipeline.synthetic.generate import Codec, encode_video
from pipeline.synthetic.object_clip import DIRECTIONS, ObjectClip, render_object_clip
from tdn.checkpoints.project import TrainingState, save_checkpoint
from tdn.model.networks import ModelConfig, build_model_from_config
from tdn.training.config import TrainConfig
from tdn.training.optim import OptimConfig
from tdn.training.trainer import Trainer, TrainerSettings
from tests.built_once import built_once

SIZE, FRAMES, T = 80, 20, 4
STEPS, BATCH = 200, 8
MOTIONS = tuple(DIRECTIONS)  # class index = position
MODEL = ModelConfig(
    arch="resnet18",
    num_classes=len(MOTIONS),
    num_segments=T,
    width=0.25,
    dropout=0.0,
    fusion_weights=(0.5, 0.5),
)


def object_clips(count: int, salt: str) -> list[tuple[ObjectClip, int]]:
    return [
        (
            render_object_clip(
                MOTIONS[i % len(MOTIONS)], FRAMES, SIZE, SIZE, rng_for(0, f"{salt}{i}", "object")
            ),
            i % 4,
        )
        for i in range(count)
    ]


def clip_batch(
    items: list[tuple[ObjectClip, int]], rng: np.random.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """x float32 (B, T, 5, 3, S, S) normalised (random windows with ``rng``, centre windows without), y (B,)."""
    xs = []
    for clip, _ in items:
        sampler = TrainSampler(T, 1) if rng is not None else CentreSampler(T)
        windows = np.array(sampler.sample(FRAMES, rng or np.random.default_rng(0))[0].frame_indices)
        xs.append(torch.from_numpy(clip.frames[windows]))  # (T, 5, S, S, 3)
    x = torch.stack(xs).permute(0, 1, 2, 5, 3, 4)
    return normalise_uint8(x), torch.tensor([y for _, y in items])


def save_object_model(model: torch.nn.Module, path: Path) -> str:
    train = TrainConfig(model=MODEL, loader=LoaderConfig(input_size=SIZE, eval_short_side=SIZE))
    save_checkpoint(str(path), model, MODEL, list(MOTIONS), TrainingState(train_config=config_to_dict(train)))
    return str(path)


def untrained_object_tdn(path: Path) -> str:
    torch.manual_seed(0)
    return save_object_model(build_model_from_config(MODEL).eval(), path)


def train_object_tdn(path: Path) -> str:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a shared 2-core machine spent 10x the CPU time spinning
    try:
        torch.manual_seed(0)
        model = build_model_from_config(MODEL)
        optim = OptimConfig(
            lr=0.02, reference_batch=16, weight_decay=1e-4, epochs=1, schedule="cosine", steps=[]
        )
        trainer = Trainer(model, TrainerSettings(optim, STEPS, BATCH), torch.device("cpu"))
        clips = object_clips(96, "train")
        rng = np.random.default_rng(0)
        for _ in range(STEPS):
            chosen = rng.choice(len(clips), BATCH, replace=False)
            trainer.train_step(*clip_batch([clips[i] for i in chosen], rng))
    finally:
        torch.set_num_threads(threads)
    return save_object_model(model.eval(), path)


def encode_clips(clips: list[tuple[ObjectClip, int]], folder: Path, codec: Codec, prefix: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    ext = {"h264": ".mp4", "mpeg4": ".avi", "vp9": ".webm"}[codec]
    paths = []
    for i, (clip, label) in enumerate(clips):
        path = folder / f"{prefix}{i:02d}-{MOTIONS[label]}{ext}"
        encode_video(clip.frames, path, codec, 25)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def object_tdn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The trained checkpoint (module docstring): once per ``make test`` run, for both xdist workers (three
    files read it, and two of them landed on different workers in a measured run: it was trained twice)."""
    built = built_once(
        tmp_path_factory, "object_tdn", lambda folder: Path(train_object_tdn(folder / "object_tdn.pt"))
    )
    return str(built)
