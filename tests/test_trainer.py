"""The Trainer (tdn/training/trainer.py) on its own: one process, no Ray, a tiny TDN on random clips."""

from __future__ import annotations

import math

import pytest
import torch

from tdn.model.networks import ModelConfig, build_model_from_config
from tdn.training.optim import OptimConfig
from tdn.training.trainer import NonFiniteError, StepResult, Trainer, TrainerSettings

TINY = ModelConfig(arch="resnet18", num_classes=3, num_segments=2, width=0.125, dropout=0.0)
CPU = torch.device("cpu")


def _batch(seed: int, n: int = 4, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 5, 3, size, size, generator=g), torch.randint(0, 3, (n,), generator=g)


def _trainer(optim: OptimConfig | None = None, callbacks=()) -> Trainer:
    torch.manual_seed(0)
    settings = TrainerSettings(
        optim or OptimConfig(lr=0.05, epochs=2, steps=[1]), steps_per_epoch=3, global_batch=4
    )
    return Trainer(build_model_from_config(TINY), settings, CPU, callbacks)


def test_train_step_counts_follows_the_schedule_and_learns_a_fixed_batch():
    trainer = _trainer()
    x, y = _batch(0)
    results = [trainer.train_step(x, y) for _ in range(6)]
    assert [r.step for r in results] == [1, 2, 3, 4, 5, 6] and trainer.step == 6
    peak = 0.05 * 4 / 64  # lr scaled to the global batch (reference 64)
    # step schedule: x0.1 from epoch 1 = iteration 3 on; each result carries the lr its step used
    assert [round(r.lr / peak, 6) for r in results] == [1, 1, 1, 0.1, 0.1, 0.1]
    assert all(r.samples == 4 and 0 <= r.correct <= 4 and r.grad_norm > 0 for r in results)
    assert results[-1].loss < results[0].loss


def test_gradients_are_clipped_to_the_configured_norm():
    trainer = _trainer(OptimConfig(lr=0.05, epochs=1, clip_grad_norm=1e-3))
    x, y = _batch(1)
    result = trainer.train_step(x, y)
    clipped = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in trainer.model.parameters() if p.grad is not None])
    )
    assert result.grad_norm > 1e-3 and float(clipped) == pytest.approx(1e-3, rel=1e-3)


def test_a_non_finite_loss_stops_before_the_weights_change():
    trainer = _trainer()
    x, y = _batch(2)
    trainer.train_step(x, y)
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    x[0, 0, 0, 0, 0, 0] = math.nan
    with pytest.raises(NonFiniteError, match=r"^step 2: loss nan"):
        trainer.train_step(x, y)
    assert trainer.step == 1
    after = dict(trainer.model.named_parameters())
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics saw the NaN forward


def test_state_dict_resumes_to_identical_weights():
    """Six steps in one go == three steps, state_dict into a fresh trainer, three more steps."""
    batches = [_batch(seed) for seed in range(6)]
    straight = _trainer()
    for x, y in batches:
        straight.train_step(x, y)
    first = _trainer()
    for x, y in batches[:3]:
        first.train_step(x, y)
    state = first.state_dict()
    resumed = _trainer()
    resumed.model.load_state_dict(state["model"])
    resumed.load_state_dict(state)
    assert resumed.step == 3 and resumed.schedule.lr == first.schedule.lr
    for x, y in batches[3:]:
        resumed.train_step(x, y)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_callbacks_see_every_step_and_timed_steps_split_the_time():
    seen: list[StepResult] = []

    class Record:
        def on_step_end(self, trainer: Trainer, result: StepResult) -> None:
            seen.append(result)

    trainer = _trainer(callbacks=[Record()])
    x, y = _batch(3)
    untimed = trainer.train_step(x, y)
    timed = trainer.train_step(x, y, timed=True)
    assert [r.step for r in seen] == [1, 2]
    assert untimed.forward_backward_s == 0.0 and timed.forward_backward_s > 0 and timed.optimizer_s > 0


def test_eval_step_is_the_eval_mode_model_without_autograd():
    trainer = _trainer(OptimConfig(lr=0.05, epochs=1))
    trainer.model.train()
    x, _ = _batch(4)
    logits = trainer.eval_step(x)
    assert logits.shape == (4, 3) and logits.dtype == torch.float32 and not logits.requires_grad
    assert not trainer.model.training
    with torch.no_grad():
        assert torch.equal(logits, trainer.model(x))
