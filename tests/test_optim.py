"""SGD, linear lr scaling, the per-iteration schedule and gradient clipping (tdn/training/optim.py)."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from tdn.training.optim import IterationSchedule, OptimConfig, build_optimizer, clip_gradients


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(36, 2))


def _lrs(schedule: IterationSchedule, n: int) -> list[float]:
    out = []
    for _ in range(n):
        out.append(schedule.optimizer.param_groups[0]["lr"])
        schedule.step()
    return out


def test_lr_scales_linearly_with_global_batch():
    cfg = OptimConfig(lr=0.01, reference_batch=64, epochs=2, steps=[1])
    model = nn.Linear(3, 2)
    for global_batch, expected in ((64, 0.01), (128, 0.02), (16, 0.0025)):
        opt, sched = build_optimizer(model, cfg, global_batch, steps_per_epoch=10)
        assert opt.param_groups[0]["lr"] == pytest.approx(expected)
        assert sched.peak == pytest.approx(expected)
    assert opt.defaults["momentum"] == 0.9 and opt.param_groups[0]["weight_decay"] == 5e-4


def test_multistep_decays_at_the_exact_iteration():
    cfg = OptimConfig(lr=0.1, reference_batch=8, epochs=6, steps=[2, 4], gamma=0.1)
    _, sched = build_optimizer(nn.Linear(2, 2), cfg, 8, steps_per_epoch=5)
    lrs = _lrs(sched, 30)
    assert lrs[:10] == [pytest.approx(0.1)] * 10
    assert lrs[10:20] == [pytest.approx(0.01)] * 10  # from iteration 2 * 5, not from the next epoch call
    assert lrs[20:] == [pytest.approx(0.001)] * 10


def test_linear_warmup_then_cosine():
    cfg = OptimConfig(
        lr=0.2,
        reference_batch=4,
        epochs=10,
        schedule="cosine",
        warmup_epochs=2,
        warmup_start_ratio=0.0,
        min_lr_ratio=0.05,
    )
    _, sched = build_optimizer(nn.Linear(2, 2), cfg, 4, steps_per_epoch=10)
    lrs = _lrs(sched, 100)
    assert lrs[0] == 0.0
    assert lrs[10] == pytest.approx(0.5 * 0.2 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 0.1))))
    assert all(b > a for a, b in zip(lrs[:20], lrs[1:20]))  # rising during warmup
    assert all(b <= a for a, b in zip(lrs[20:], lrs[21:]))  # then only falling
    assert sched.lr_at(100) == pytest.approx(0.2 * 0.05)  # the floor at the end


def test_schedule_state_resumes_mid_run_and_loads_weights_only():
    cfg = OptimConfig(lr=0.1, reference_batch=8, epochs=4, schedule="cosine", warmup_epochs=1)
    model = _model()
    model(torch.zeros(1, 3, 5, 5))
    opt, sched = build_optimizer(model, cfg, 8, steps_per_epoch=7)
    for _ in range(11):
        sched.step()
    buf = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt2, sched2 = build_optimizer(model, cfg, 8, steps_per_epoch=7)
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    assert _lrs(sched2, 17) == _lrs(sched, 17)


def test_gradient_clipping_to_20():
    model = nn.Linear(10, 10)
    cfg = OptimConfig()
    for p in model.parameters():
        p.grad = torch.full_like(p, 10.0)
    before = clip_gradients(model, cfg)
    assert before == pytest.approx(10.0 * math.sqrt(110))
    after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert float(after) == pytest.approx(20.0, rel=1e-4)
    small = nn.Linear(2, 2)
    for p in small.parameters():
        p.grad = torch.ones_like(p)
    clip_gradients(small, cfg)
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in small.parameters())  # below 20: untouched


def test_norm_and_bias_can_be_exempt_from_weight_decay():
    opt, _ = build_optimizer(_model(), OptimConfig(decay_norm_and_bias=False), 64, 1)
    decayed, exempt = opt.param_groups
    assert decayed["weight_decay"] == 5e-4 and exempt["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim == 1 for p in exempt["params"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": 0.0}, "lr"),
        ({"epochs": 0}, "epochs"),
        ({"steps": [5, 3]}, "steps"),
        ({"warmup_epochs": 100, "epochs": 10}, "warmup"),
        ({"clip_grad_norm": -1.0}, "clip"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OptimConfig(**kwargs)
