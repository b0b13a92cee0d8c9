"""Randomness of a training worker: seeded per (seed, epoch, rank), saved in and restored from checkpoints.

seed_everything(seed, epoch, rank)   python, numpy and torch generators -> a replayed epoch draws the same
seed_model_init(seed)                 the same generators before the model is built (identical init)
rng_state() -> dict of tensors/lists/ints (checkpoint["rng"], loadable with weights_only=True)
set_rng_state(checkpoint["rng"])
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, epoch: int, rank: int) -> None:
    """Seed python, numpy and torch from (seed, epoch, rank): a replayed epoch draws the same numbers."""
    s = int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def seed_model_init(seed: int) -> None:
    """Seed the generators a model's initial weights draw from, the same on every rank; called before the model
    is built, so what a worker process drew before (a reused Ray worker) cannot reach the weights."""
    s = int(np.random.SeedSequence([seed, 0x1517]).generate_state(1)[0])  # a stream no (epoch, rank) uses
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def rng_state() -> dict[str, Any]:
    """RNG states as tensors/lists/ints only, so the checkpoint loads with weights_only=True."""
    # legacy=True: the global RandomState is MT19937, whose legacy state is the tuple
    # ("MT19937", keys, pos, has_gauss, cached_gaussian); the dict form exists only for other bit generators.
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple), "the global numpy RandomState is always MT19937"
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss_next": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
