"""SGD and the per-iteration learning-rate schedule of the released TDN recipes.

    lr(step) = peak * warmup(step) * decay(step)          peak = base_lr * global_batch / reference_batch

``decay`` is either the multi-step rule (x ``gamma`` at each epoch in ``steps``, applied at the exact iteration
``epoch * steps_per_epoch``) or a half cosine from ``peak`` to ``peak * min_lr_ratio`` over the run; ``warmup``
rises linearly from ``warmup_start_ratio`` to 1 over ``warmup_epochs`` (0 = none, as in the released code).
The schedule is a pure function of the iteration, so its state is one integer and resuming never drifts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from pipeline.config import require_finite


@dataclass
class OptimConfig:
    """SGD + schedule. ``lr`` is the learning rate for a global batch of ``reference_batch`` samples."""

    lr: float = 0.01  # learning rate for reference_batch samples per step (scaled linearly)
    reference_batch: int = 64  # the released recipes: 8 GPUs x 8 (SSv1/v2) -> lr 0.01
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # L2 weight decay
    # The released code decays BN and bias parameters too; set False to exempt them.
    decay_norm_and_bias: bool = True
    nesterov: bool = False  # Nesterov momentum
    epochs: int = 60  # training epochs
    schedule: Literal["step", "cosine"] = "step"  # learning-rate schedule
    steps: list[int] = field(default_factory=lambda: [30, 45, 55])  # epochs at which lr *= gamma
    gamma: float = 0.1  # step schedule: lr factor at each of steps
    min_lr_ratio: float = 0.0  # cosine floor, relative to the peak
    warmup_epochs: float = 0.0  # linear warm-up length, epochs
    warmup_start_ratio: float = 0.01  # warm-up starts at this fraction of lr
    clip_grad_norm: float | None = 20.0  # None = no clipping

    def __post_init__(self) -> None:
        require_finite(self, "optim")
        if self.lr <= 0 or self.reference_batch < 1:
            raise ValueError(
                f"lr must be > 0 and reference_batch >= 1, got {self.lr}, {self.reference_batch}"
            )
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs], got {self.warmup_epochs}")
        if list(self.steps) != sorted(self.steps) or any(s < 0 for s in self.steps):
            raise ValueError(f"steps must be increasing epoch numbers, got {self.steps}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ValueError(f"clip_grad_norm must be > 0 or null, got {self.clip_grad_norm}")

    def peak_lr(self, global_batch: int) -> float:
        """Linear scaling rule: the recipe's lr was tuned for ``reference_batch`` samples per step."""
        return self.lr * global_batch / self.reference_batch


class IterationSchedule:
    """Sets the lr of every param group at each iteration. State: the iteration count (``step``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int, peak: float):
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.optimizer = optimizer
        self.cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        self.peak = peak
        self.step_count = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        cfg, spe = self.cfg, self.steps_per_epoch
        total = cfg.epochs * spe
        if cfg.schedule == "step":
            decay = cfg.gamma ** sum(step >= m * spe for m in cfg.steps)
        else:
            progress = min(step / total, 1.0)
            floor = cfg.min_lr_ratio
            decay = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        warmup_steps = cfg.warmup_epochs * spe
        warm = 1.0
        if warmup_steps > 0 and step < warmup_steps:
            warm = cfg.warmup_start_ratio + (1.0 - cfg.warmup_start_ratio) * step / warmup_steps
        return self.peak * warm * decay

    def _apply(self) -> None:
        lr = self.lr_at(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)

    def step(self) -> None:
        """Call after ``optimizer.step()``: moves to the next iteration's lr."""
        self.step_count += 1
        self._apply()

    @property
    def lr(self) -> float:
        return self.lr_at(self.step_count)

    def state_dict(self) -> dict[str, int | float]:
        return {"step": self.step_count, "steps_per_epoch": self.steps_per_epoch, "peak": self.peak}

    def load_state_dict(self, state: dict[str, int | float]) -> None:
        # The iteration is what matters; steps_per_epoch/peak follow the current run (other world size allowed).
        self.step_count = int(state["step"])
        self._apply()


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """One group, or two when BN/bias parameters are exempt from weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.decay_norm_and_bias:
        return [{"params": params, "weight_decay": cfg.weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    model: nn.Module, cfg: OptimConfig, global_batch: int, steps_per_epoch: int
) -> tuple[torch.optim.SGD, IterationSchedule]:
    """SGD over ``model`` and its schedule, the lr already scaled for ``global_batch``."""
    peak = cfg.peak_lr(global_batch)
    optimizer = torch.optim.SGD(
        param_groups(model, cfg), lr=peak, momentum=cfg.momentum, nesterov=cfg.nesterov
    )
    return optimizer, IterationSchedule(optimizer, cfg, steps_per_epoch, peak)


def clip_gradients(model: nn.Module, cfg: OptimConfig) -> float:
    """Clip the global grad norm to ``cfg.clip_grad_norm`` (released code: 20); returns the norm before."""
    params = [p for p in model.parameters() if p.grad is not None]
    if cfg.clip_grad_norm is None:
        norms = [p.grad.detach().norm() for p in params if p.grad is not None]  # all are: the if narrows
        return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0
    return float(nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm))
