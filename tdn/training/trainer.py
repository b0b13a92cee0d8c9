"""The training step: one object that holds model, optimiser, schedule, precision and the step counter.

    trainer = Trainer(model, TrainerSettings.from_config(cfg, steps_per_epoch, world), device)
    for x, y in batches:                     x (B, T, 5, 3, S, S) float32 normalised, y (B,) int64, on device
        result = trainer.train_step(x, y)    -> StepResult(loss, correct, samples, grad_norm, lr)
    logits = trainer.eval_step(x)            (B, classes) float32, eval mode, no autograd
    trainer.state_dict() / load_state_dict() model, optimizer, scheduler, step (the checkpoint's keys)

One step::

    [bf16 autocast on CUDA] logits = module(x) -> loss = CE(logits.float(), y)
      -> zero_grad -> backward -> clip_grad_norm_ (optim.clip_grad_norm; released code: 20)
      -> loss and gradient norm finite? else NonFiniteError naming the step (no parameter is updated)
      -> SGD step -> schedule.step() (lr of the next iteration) -> step += 1 -> callbacks.on_step_end

``module`` is what runs forward and backward: the model itself, or the same model wrapped in DDP (several
ranks) and/or torch.compile; ``model`` is the bare network whose state_dict checkpoints hold. Parallelism is
set up here, outside the model. The Ray Train loop (loop.py), the benchmarks (benchmarks/) and the tests all
call this class: there is one optimiser step in the project.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from tdn.training.optim import OptimConfig, build_optimizer, clip_gradients

if TYPE_CHECKING:  # the step itself needs no Ray, MLflow or PyAV (benchmarks run it on a bare GPU machine)
    from tdn.training.config import TrainConfig


class NonFiniteError(ValueError):
    """The loss or the gradient norm of a step is NaN or infinite: training cannot go on from here."""


@dataclass(frozen=True)
class TrainerSettings:
    """What the step needs besides the model: the optimiser recipe, the batch geometry, the precision."""

    optim: OptimConfig
    steps_per_epoch: int  # optimiser steps per epoch on every rank (the schedule's epoch boundaries)
    global_batch: int  # samples per step over all ranks (the lr is scaled to it: optim.peak_lr)
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # channels-last memory format on CUDA
    compile: bool = False  # torch.compile the forward and backward

    @classmethod
    def from_config(cls, cfg: TrainConfig, steps_per_epoch: int, world_size: int) -> TrainerSettings:
        return cls(
            optim=cfg.optim,
            steps_per_epoch=steps_per_epoch,
            global_batch=cfg.loader.batch_size * world_size,
            amp=cfg.run.amp,
            channels_last=cfg.run.channels_last,
            compile=cfg.run.compile,
        )


@dataclass(frozen=True)
class StepResult:
    """One optimiser step's numbers (host floats: reading them waits for the device)."""

    step: int  # global step after this one (1 = the first step of the run)
    loss: float  # mean cross-entropy of the batch
    correct: int  # top-1 hits in the batch
    samples: int  # batch size on this rank
    grad_norm: float  # global gradient norm before clipping
    lr: float  # learning rate this step used
    forward_backward_s: float = 0.0  # with ``timed``: forward + loss + backward + clipping, device synced
    optimizer_s: float = 0.0  # with ``timed``: SGD step + schedule, device synced


class StepCallback(Protocol):
    """Called after every optimiser step (e.g. tests' fault injection: tdn/training/fault_injection.py)."""

    def on_step_end(self, trainer: Trainer, result: StepResult) -> None: ...


class Trainer:
    """Model, optimiser, schedule, autocast, gradient clipping and the global step of one training process."""

    def __init__(
        self,
        model: nn.Module,
        settings: TrainerSettings,
        device: torch.device,
        callbacks: Sequence[StepCallback] = (),
    ) -> None:
        self.settings = settings
        self.device = device
        self.callbacks = list(callbacks)
        self.cuda = device.type == "cuda"
        self.model = model.to(device)
        if self.cuda and settings.channels_last:
            # Module.to(memory_format=...) exists at runtime (torch docs) but torch's overloads leave it out
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.module: nn.Module = self.model
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ids = [device.index] if self.cuda else None
            self.module = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if settings.compile:
            self.module = torch.compile(self.module)  # type: ignore[assignment]
        self.optimizer, self.schedule = build_optimizer(
            self.model, settings.optim, settings.global_batch, settings.steps_per_epoch
        )
        self.criterion = nn.CrossEntropyLoss()
        self.step = 0  # optimiser steps done in the run (resumed from checkpoints)

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda and self.settings.amp)

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, timed: bool = False) -> StepResult:
        """One optimiser step on the batch; ``timed`` synchronises the device to split the step's time."""
        self.module.train()
        lr = self.schedule.lr
        t0 = time.perf_counter()
        with self._autocast():
            logits = self.module(x)
            loss = self.criterion(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(self.module, self.settings.optim)
        loss_value = float(loss.detach())
        if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
            raise NonFiniteError(
                f"step {self.step + 1}: loss {loss_value}, gradient norm {grad_norm} (lr {lr:.4g}); "
                "training stopped before the weights were updated"
            )
        if timed:
            self._sync()
        t1 = time.perf_counter()
        self.optimizer.step()
        self.schedule.step()
        self.step += 1
        if timed:
            self._sync()
        result = StepResult(
            step=self.step,
            loss=loss_value,
            correct=int((logits.detach().argmax(1) == y).sum()),
            samples=int(y.shape[0]),
            grad_norm=grad_norm,
            lr=lr,
            forward_backward_s=t1 - t0 if timed else 0.0,
            optimizer_s=time.perf_counter() - t1 if timed else 0.0,
        )
        for callback in self.callbacks:
            callback.on_step_end(self, result)
        return result

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes) in float32 of the bare model in eval mode (no DDP: ranks score their own
        shards; the caller all-reduces counts)."""
        self.model.eval()
        with self._autocast():
            return self.model(x).float()

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to continue this run: weights, optimiser, schedule, step."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "step": self.step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Back to a checkpoint's optimiser, schedule and step (the weights are loaded strictly by the
        checkpoint reader, which names the file on a mismatch: checkpointing.resume_from)."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
