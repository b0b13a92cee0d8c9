"""The L-TDM's gate (expand 1x1 conv, BN, sigmoid, Eq. 6 with the residual) and its 1x1 convolutions.

    x (N*T, C, H, W), m (k*N*T, C/r, H, W) (k = 1 or 2 directions, rows [i*N*T, (i+1)*N*T) = direction i)
    a_i = BN(conv1x1_{C/r -> C}(m_i))                       (one BN module, each direction normalised alone)
    out = x + x * mean_i(sigmoid(a_i) - 1/2)                (the released code's y = 0.5*y_f + 0.5*y_b)

computed as out = x + (1/k) * x * t with, for two directions, t = sigmoid(a_0) - sigmoid(-a_1) (since
sigmoid(a) - 1/2 + sigmoid(b) - 1/2 = sigmoid(a) - sigmoid(-b)), and t = sigmoid(a_0) - 1/2 for one. -a_1 is
BN with its affine weight and bias negated (exact). So x is read once after the two sigmoids (one
subtraction, one addcmul) where the released code makes five passes (-0.5 twice, 0.5* twice, +, x*y, x+).

Training: ``AttentionGateFunction`` keeps only x, the maps m (C/r channels) and BN's per-channel batch
statistics for backward and recomputes the 1x1 conv, BN's affine map and the sigmoid there, instead of
keeping k C-channel tensors per block. BN runs as BatchNorm2d.forward runs it: batch statistics, running
statistics updated once per direction in the directions' order; backward never touches them.
Inference (running statistics): ``folded_gate`` folds BN into the 1x1 conv's weight and bias.

1x1 convolutions run as batched matrix products (``pointwise_conv``): oneDNN, which PyTorch uses for a
1x1 conv at batch >= 16 or with more than one thread, is slow with few input channels; measured here
(1 thread): (64, 8, 28, 28) -> 128 channels 37 ms as a conv, 4 ms as bmm; (8, 8, 56, 56) -> 128: 2.3 vs 1.6.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """conv2d(x, weight, bias) for a 1x1 kernel, stride 1: (N, Cin, H, W) -> (N, Cout, H, W), same format."""
    n, cin, h, w = x.shape
    cout = weight.shape[0]
    w2 = weight.reshape(cout, cin)
    if x.is_contiguous():
        flat = x.view(n, cin, h * w)
        if bias is None:
            out = torch.bmm(w2.expand(n, cout, cin), flat)
        else:
            out = torch.baddbmm(bias.view(1, cout, 1), w2.expand(n, cout, cin), flat)
        return out.view(n, cout, h, w)
    if x.is_contiguous(memory_format=torch.channels_last):
        rows = F.linear(x.permute(0, 2, 3, 1).reshape(n * h * w, cin), w2, bias)
        return rows.view(n, h, w, cout).permute(0, 3, 1, 2)
    return F.conv2d(x, weight, bias)


class _Moments:
    """One direction's BN statistics of e = W m, from the moments of the C/r-channel m (float64).

    mean_e = W mean_m, var_e = diag(W S W^T) / P with S = sum_p (m_p - mean_m)(m_p - mean_m)^T (r x r) over the
    P = N*T*H*W pixels: exact for a 1x1 conv, and e (C channels) is never materialised or read.
    """

    def __init__(self, m3: torch.Tensor, weight: torch.Tensor, eps: float) -> None:
        md = m3.double()
        self.count = md.shape[0] * md.shape[2]
        self.mean_m = md.mean(dim=(0, 2))
        centred = md - self.mean_m.view(1, -1, 1)
        self.scatter = torch.bmm(centred, centred.transpose(1, 2)).sum(0)
        w = weight.double()
        self.mean = w @ self.mean_m
        self.var = ((w @ self.scatter) * w).sum(1) / self.count
        self.invstd = (self.var + eps).rsqrt()

    def update_running(self, bn: nn.BatchNorm2d, momentum: float) -> None:
        """BatchNorm's running-statistics update: unbiased variance, as BatchNorm2d.forward does it."""
        if bn.running_mean is not None:
            rm = bn.running_mean
            rm.copy_(momentum * self.mean + (1 - momentum) * rm.double())
        if bn.running_var is not None:
            rv = bn.running_var
            unbiased = self.var * (self.count / max(self.count - 1, 1))
            rv.copy_(momentum * unbiased + (1 - momentum) * rv.double())


class AttentionGateFunction(torch.autograd.Function):
    """The gate with batch statistics (training); see the module docstring.

    Per direction, BN with batch statistics is an affine map of e = W m whose statistics come from m's
    moments (``_Moments``), so BN(W m) = A m + b is one batched matrix product: no C-channel conv output, no
    BN pass over it. Backward uses the same algebra: BN's input gradient and the 1x1 conv's gradients are
    matrix products of the sigmoid's gradient g with m (g m^T, A^T g), plus r x r corrections; g is the only
    C-channel tensor per direction besides the recomputed sigmoid.
    """

    @staticmethod
    def forward(
        ctx,
        x: torch.Tensor,
        m: torch.Tensor,
        weight: torch.Tensor,
        bn_weight: torch.Tensor | None,
        bn_bias: torch.Tensor | None,
        bn: nn.BatchNorm2d,
        directions: int,
    ) -> torch.Tensor:
        nt, k = x.shape[0], directions
        m3 = m.contiguous().view(m.shape[0], m.shape[1], -1)
        w2 = weight.reshape(weight.shape[0], -1)
        gamma, beta = _affine(bn_weight, bn_bias, w2)
        moments, total = [], None
        for i in range(k):
            mo = _Moments(m3[i * nt : (i + 1) * nt], w2, bn.eps)
            momentum = bn_step(bn)
            if bn.training and bn.track_running_stats:
                mo.update_running(bn, momentum)
            a = _affine_product(m3[i * nt : (i + 1) * nt], w2, gamma, beta, mo, sign=1 - 2 * i)
            total = a.sigmoid_() if total is None else total.sub_(a.sigmoid_())
            moments.append(mo)
        assert total is not None
        ctx.dtype = total.dtype  # under autocast the product runs in the low-precision type
        if k == 1:
            total = total.sub_(0.5)
        ctx.moments, ctx.directions, ctx.shape = moments, k, m.shape
        ctx.save_for_backward(x, m3, weight, bn_weight, bn_bias)
        return torch.addcmul(x, x, total.view(x.shape), value=1.0 / k)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, m3, weight, bn_weight, bn_bias = ctx.saved_tensors
        needs = ctx.needs_input_grad  # x, m, weight, bn_weight, bn_bias, bn, directions
        k, nt, dt = ctx.directions, x.shape[0], ctx.dtype
        value = 1.0 / k
        w2 = weight.reshape(weight.shape[0], -1)
        gamma, beta = _affine(bn_weight, bn_bias, w2)
        # out = x + value * x * sum_i s_i sigmoid(a_i), a_i = s_i * BN(W m_i); g_i = d out/d(s_i a_i) without
        # value: the signs cancel in every gradient below, value scales them all
        gx = (grad * x).reshape(nt, x.shape[1], -1).to(dt)
        total = None
        grad_m: list[torch.Tensor] = []
        grad_params: list[torch.Tensor | None] = [None, None, None]
        for i, mo in enumerate(ctx.moments):
            m_i = m3[i * nt : (i + 1) * nt]
            act = _affine_product(m_i.to(dt), w2.to(dt), gamma, beta, mo, sign=1 - 2 * i).sigmoid_()
            g = torch.ops.aten.sigmoid_backward(gx, act)
            total = act if total is None else total.sub_(act)
            del act
            grads = _bn_product_backward(g, m_i.to(dt), w2, gamma, mo, value, needs[1:5])
            del g
            if grads[0] is not None:
                grad_m.append(grads[0].to(m3.dtype))
            for j, gr in enumerate(grads[1:]):
                before = grad_params[j]
                if gr is not None:
                    grad_params[j] = gr if before is None else before + gr
        grad_x = None
        if needs[0]:
            assert total is not None
            if k == 1:
                total = total.sub_(0.5)
            grad_x = torch.addcmul(grad, grad, total.view(x.shape), value=value).to(x.dtype)
        grad_maps = torch.cat(grad_m).view(ctx.shape) if grad_m else None
        if grad_params[0] is not None:
            grad_params[0] = grad_params[0].view(weight.shape).to(weight.dtype)
        for j, p in ((1, bn_weight), (2, bn_bias)):
            if grad_params[j] is not None and p is not None:
                grad_params[j] = grad_params[j].to(p.dtype)  # type: ignore[union-attr]
        return (grad_x, grad_maps, *grad_params, None, None)


def _affine(
    bn_weight: torch.Tensor | None, bn_bias: torch.Tensor | None, w2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """BN's affine weight and bias in float64 (a missing weight is 1, a missing bias 0)."""
    c = w2.shape[0]
    gamma = torch.ones(c, dtype=torch.float64, device=w2.device) if bn_weight is None else bn_weight.double()
    beta = torch.zeros(c, dtype=torch.float64, device=w2.device) if bn_bias is None else bn_bias.double()
    return gamma, beta


def _affine_product(
    m3: torch.Tensor, w2: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, mo: _Moments, sign: int
) -> torch.Tensor:
    """sign * BN(W m) = A m + b with A = sign*gamma*invstd*W, b = sign*(beta - gamma*invstd*mean_e): (N, C, P)."""
    scale = gamma * mo.invstd
    a = (sign * scale).view(-1, 1) * w2.double()
    b = sign * (beta - scale * mo.mean)
    n, c = m3.shape[0], w2.shape[0]
    return torch.baddbmm(b.to(m3.dtype).view(1, c, 1), a.to(m3.dtype).expand(n, *a.shape), m3)


def _bn_product_backward(
    g: torch.Tensor,
    m3: torch.Tensor,
    w2: torch.Tensor,
    gamma: torch.Tensor,
    mo: _Moments,
    value: float,
    needs: tuple[bool, ...],
) -> tuple[torch.Tensor | None, ...]:
    """Gradients of value * sum(g * BN(W m)) for m, W, BN's weight and bias (batch statistics).

    With x_hat = invstd * W (m - mean_m), gs = sum_p g, dg = invstd * rowdot(g (m - mean_m)^T, W) = sum_p g x_hat:
        d/d bias = gs, d/d weight = dg,
        d/d e = gamma*invstd * (g - gs/P - invstd*dg/P * W (m - mean_m))       (BN's input gradient)
        d/d m = A^T g - A^T gs/P - K (m - mean_m), A = gamma*invstd*W, K = W^T diag(gamma*invstd^2*dg/P) W
        d/d W = d/d e m^T = gamma*invstd * (g (m - mean_m)^T - invstd*dg/P * W S)
    all times ``value``.
    """
    n, r, count = m3.shape[0], m3.shape[1], mo.count
    centred = m3 - mo.mean_m.to(m3.dtype).view(1, -1, 1)
    # g (m - mean_m)^T and gs = g 1 in one product: a row of ones appended to m (a separate sum over g, which
    # has C channels, costs as much as the product itself)
    ones = torch.ones(n, 1, centred.shape[2], dtype=centred.dtype, device=centred.device)
    both = torch.bmm(g, torch.cat([centred, ones], dim=1).transpose(1, 2)).sum(0).double()
    gm, gs = both[:, :r], both[:, r]  # (C, r), (C,)
    w = w2.double()
    dg = mo.invstd * (gm * w).sum(1)
    scale = gamma * mo.invstd
    grad_m = grad_w = None
    if needs[0]:
        a_t = (scale.view(-1, 1) * w).t()  # (r, C)
        k_mat = w.t() @ ((scale * mo.invstd * dg / count).view(-1, 1) * w)  # (r, r)
        const = -(a_t @ gs) / count
        base = const.view(1, r, 1).to(m3.dtype) - torch.bmm(k_mat.to(m3.dtype).expand(n, r, r), centred)
        grad_m = torch.baddbmm(base, a_t.to(g.dtype).expand(n, *a_t.shape), g, beta=value, alpha=value)
    if needs[1]:
        grad_w = value * scale.view(-1, 1) * (gm - (mo.invstd * dg / count).view(-1, 1) * (w @ mo.scatter))
    grad_gamma = value * dg if needs[2] else None
    grad_beta = value * gs if needs[3] else None
    return grad_m, grad_w, grad_gamma, grad_beta


def folded_gate(
    x: torch.Tensor, m: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d, directions: int
) -> torch.Tensor:
    """The gate with BN's running statistics (inference): BN (and its sign) folded into the 1x1 conv.

    BN(e) = e*s + t with s = weight/sqrt(var + eps), t = bias - mean*s, so BN(conv(m; W)) = conv(m; W*s) + t.
    """
    assert bn.running_mean is not None and bn.running_var is not None
    scale = (bn.running_var + bn.eps).rsqrt()
    if bn.weight is not None:
        scale = bn.weight * scale
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    nt = x.shape[0]
    first = pointwise_conv(m[:nt], weight, shift).sigmoid_()
    second = 0.5 if directions == 1 else pointwise_conv(m[nt:], -weight, -shift).sigmoid_()
    if torch.is_grad_enabled():
        return torch.addcmul(x, x, first - second, value=1.0 / directions)
    # no autograd graph: reuse the temporaries (large C-channel allocations cost page faults at batch 8)
    total = first.sub_(second)
    return torch.addcmul(x, x, total, value=1.0 / directions, out=total)


def bn_uses_batch_stats(bn: nn.BatchNorm2d) -> bool:
    """Whether BatchNorm2d.forward normalises with the batch's statistics (training, or no running ones)."""
    return bn.training or bn.running_mean is None or bn.running_var is None


def bn_step(bn: nn.BatchNorm2d) -> float:
    """BatchNorm2d.forward's bookkeeping: count the batch, return the running-statistics momentum."""
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    return factor
