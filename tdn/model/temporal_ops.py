"""TDN's temporal operations as autograd functions with hand-written backward passes (pure torch).

Each computes the function of the plain-op formulation it stands for (tests/test_model.py compares values
and gradients in float64, and gradchecks them) with fewer passes over memory:

    TemporalConvFunction        x5 (N, T, C, H, W), w (C, 3) -> same shape as x5
        out[t] = w0*x[t-1] + w1*x[t] + w2*x[t+1], zero outside 0..T-1 (the released ShiftModule's Conv1d)
    TemporalDifferenceFunction  f, s (N*T, C, H, W) -> D (k*N*T, C, H, W); rows [i*N*T, (i+1)*N*T) hold
        direction i: forward D[t] = s[t+1] - f[t] (0 at T-1), backward D[t] = s[t-1] - f[t] (0 at 0)

Both write every output element once (no zero-filled buffer and a copy into a slice of it, no CopySlices
clone of the whole gradient per slice) and keep the memory format of their input.
"""

from __future__ import annotations

import torch


def _shift_mix(x5: torch.Tensor, prev: torch.Tensor, here: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
    """out[:, t] = prev*x[:, t-1] + here*x[:, t] + nxt*x[:, t+1] (zero outside 0..T-1); weights (C,)."""
    shape = (1, 1, -1, 1, 1)
    out = x5 * here.view(shape)
    out[:, 1:].addcmul_(x5[:, :-1], prev.view(shape))
    out[:, :-1].addcmul_(x5[:, 1:], nxt.view(shape))
    return out


class TemporalConvFunction(torch.autograd.Function):
    """Depthwise kernel-3 conv over dim 1 of (N, T, C, H, W); backward: the kernel mirrored + 3 reductions."""

    @staticmethod
    def forward(ctx, x5: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # w: (C, 3)
        ctx.save_for_backward(x5, w)
        return _shift_mix(x5, w[:, 0], w[:, 1], w[:, 2])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x5, w = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            # x[t] reaches out[t+1] through w0, out[t] through w1, out[t-1] through w2
            grad_x = _shift_mix(grad, w[:, 2], w[:, 1], w[:, 0])
        if ctx.needs_input_grad[1]:
            pairs = ((grad[:, 1:], x5[:, :-1]), (grad, x5), (grad[:, :-1], x5[:, 1:]))
            grad_w = torch.stack([_channel_dots(g, x) for g, x in pairs], dim=1).to(w.dtype)
        return grad_x, grad_w


def _channel_dots(a5: torch.Tensor, b5: torch.Tensor) -> torch.Tensor:
    """sum over n, t, h, w of a5 * b5, per channel: (N, T, C, H, W) x2 -> (C,).

    Clip by clip as dot products over (H*W) rows (``torch.linalg.vecdot``) when each clip's block is
    contiguous: the product is never written out (measured, (1, 7, 128, 56, 56): 2.4 ms vs 3.9 ms).
    """
    n, t, c = a5.shape[:3]
    if not all(v[i].is_contiguous() for v in (a5, b5) for i in range(n)):
        return (a5 * b5).sum(dim=(0, 1, 3, 4))
    total = None
    for i in range(n):
        dots = torch.linalg.vecdot(a5[i].reshape(t * c, -1), b5[i].reshape(t * c, -1)).view(t, c).sum(0)
        total = dots if total is None else total + dots
    assert total is not None
    return total


class TemporalDifferenceFunction(torch.autograd.Function):
    """Both L-TDM directions' differences written into one (k*N*T, C, H, W) tensor (module docstring).

    ``average`` replaces the difference by the mean (s + f) / 2 (Table 1a's "avg" operator).
    """

    @staticmethod
    def forward(
        ctx, f: torch.Tensor, s: torch.Tensor, segments: int, directions: int, average: bool
    ) -> torch.Tensor:
        nt = f.shape[0]
        shape = (nt // segments, segments, *f.shape[1:])
        ctx.shape, ctx.directions, ctx.average = shape, directions, average
        f5, s5 = f.view(shape), s.view(shape)
        d = _empty_as(f, (directions * nt, *f.shape[1:]))
        d6 = d.view(directions, *shape)
        _combine(s5[:, 1:], f5[:, :-1], d6[0, :, :-1], average)
        d6[0, :, -1].zero_()
        if directions == 2:
            _combine(s5[:, :-1], f5[:, 1:], d6[1, :, 1:], average)
            d6[1, :, 0].zero_()
        return d

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        shape, k = ctx.shape, ctx.directions
        g6 = grad.reshape(k, *shape)
        scale_s, scale_f = (0.5, 0.5) if ctx.average else (1.0, -1.0)
        grads: list[torch.Tensor | None] = []
        # s[t] reaches D_fwd[t-1] and D_bwd[t+1]; f[t] reaches D_fwd[t] and D_bwd[t]
        for i, scale in enumerate((scale_f, scale_s)):
            if not ctx.needs_input_grad[i]:
                grads.append(None)
                continue
            out = _empty_as(grad, (shape[0] * shape[1], *shape[2:]))
            o5 = out.view(shape)
            fwd, edge = (o5[:, :-1], o5[:, -1]) if i == 0 else (o5[:, 1:], o5[:, 0])
            torch.mul(g6[0, :, :-1], scale, out=fwd)
            edge.zero_()
            if k == 2:
                (o5[:, 1:] if i == 0 else o5[:, :-1]).add_(g6[1, :, 1:], alpha=scale)
            grads.append(out)
        return grads[0], grads[1], None, None, None


class UpsampleAddFunction(torch.autograd.Function):
    """a*x + b*up(h), up = nearest-neighbour x2 upsampling: x (N, C, 2h, 2w) contiguous, h (N, C, h, w).

    up(h) repeats each value 2x2: h (times b) is widened once (half of x's size) and added to both rows of
    each row pair by broadcasting, so x is read once; the plain form reads and writes x-sized tensors three
    times (a*x, the upsampled copy, the sum). Backward: a*grad, and b times the sum of each 2x2 block of grad
    (two strided additions, where the broadcast's autograd would reduce over size-2 dimensions, which is
    slow). Same products and one addition per element: with (0.5, 0.5) bit-identical to the plain ops.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, h: torch.Tensor, a: float, b: float) -> torch.Tensor:
        ctx.a, ctx.b = a, b
        n, c, hh, hw = h.shape
        return torch.add(widened(h, b), x.view(n, c, hh, 2, 2 * hw), alpha=a).view(x.shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_x = grad * ctx.a if ctx.needs_input_grad[0] else None
        grad_h = sum_2x2(grad).mul_(ctx.b) if ctx.needs_input_grad[1] else None
        return grad_x, grad_h, None, None


def widened(h: torch.Tensor, b: float) -> torch.Tensor:
    """(N, C, h, w) -> b*h with each column repeated twice, shaped (N, C, h, 1, 2w) to broadcast over row pairs."""
    n, c, hh, hw = h.shape
    return (h * b).unsqueeze(-1).expand(n, c, hh, hw, 2).reshape(n, c, hh, 1, 2 * hw)


def sum_2x2(x: torch.Tensor) -> torch.Tensor:
    """(N, C, 2h, 2w) -> (N, C, h, w): the sum of each 2x2 block, rows first, then columns."""
    n, c, h, w = x.shape
    rows = x.reshape(n, c, h // 2, 2, w)
    pairs = torch.add(rows[:, :, :, 0], rows[:, :, :, 1]).view(n, c, h // 2, w // 2, 2)
    return torch.add(pairs[..., 0], pairs[..., 1])


def _combine(other: torch.Tensor, here: torch.Tensor, out: torch.Tensor, average: bool) -> None:
    if average:
        torch.add(other, here, out=out).mul_(0.5)
    else:
        torch.sub(other, here, out=out)


def _empty_as(t: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised tensor of ``size`` with ``t``'s dtype, device and memory format. Through
    ``t.new_empty`` rather than ``torch.empty(device=t.device)``: torch.export records the latter with the
    device of the export (a CPU-pinned allocation in the logged model, which then fails after ``.to("cuda")``),
    the former as an allocation on its input's device. A channels-last result is an NHWC buffer seen as NCHW."""
    if _memory_format(t) == torch.channels_last:
        n, c, h, w = size
        return t.new_empty((n, h, w, c)).permute(0, 3, 1, 2)
    return t.new_empty(size)


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
