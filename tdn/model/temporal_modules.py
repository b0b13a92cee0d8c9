"""TDN's temporal modules: the short-term TDM (S-TDM), the long-term TDM (L-TDM) and the temporal conv.

All of them take frames stacked in the batch dimension, clip-major: a (N*T, C, H, W) tensor whose row
n*T + t is segment t of clip n (the released code's layout). Every op keeps the memory format of its input, so
the modules run unchanged on channels_last tensors.

Where they sit (see ``tdn/model/resnet.py`` for the block diagram): the S-TDM is a separate low-resolution stream
whose outputs are added to the RGB stream after the stem and after layer1; the L-TDM and the temporal conv sit
inside every block of layer2..layer4, after conv1+bn1+relu (in a basic block of ResNet-18/34: after the first
3x3 conv+bn1+relu, before the second 3x3 conv).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

LTDMOperator = Literal["diff", "avg"]  # Table 1a: temporal difference, or the average of the two segments
LTDMFusion = Literal["attention", "add", "channel_attention"]  # Table 1c: F + F*G, F + G, F + F*G_channel
STDMInput = Literal["diff", "stack"]  # Table 1a: 4 stacked RGB differences (12 ch), or the 5 frames (15 ch)
STDMFusion = Literal["add", "mul", "add_mul", "channel_mul", "add_channel_mul"]  # Table 1b
TemporalInit = Literal["shift", "identity"]


def _shift_mix(x5: torch.Tensor, prev: torch.Tensor, here: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
    """out[:, t] = prev*x[:, t-1] + here*x[:, t] + nxt*x[:, t+1] (zero outside 0..T-1); weights (C,)."""
    shape = (1, 1, -1, 1, 1)
    out = x5 * here.view(shape)
    out[:, 1:].addcmul_(x5[:, :-1], prev.view(shape))
    out[:, :-1].addcmul_(x5[:, 1:], nxt.view(shape))
    return out


class _TemporalConvFunction(torch.autograd.Function):
    """Depthwise kernel-3 conv over dim 1 of (N, T, C, H, W) with a hand-written backward.

    Autograd through in-place slice updates would clone the full gradient per slice (CopySlices); the
    backward here is the same shifted form with the kernel mirrored, plus three per-channel reductions.
    """

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
            dims = (0, 1, 3, 4)
            grad_w = torch.stack(
                [
                    (grad[:, 1:] * x5[:, :-1]).sum(dims),
                    (grad * x5).sum(dims),
                    (grad[:, :-1] * x5[:, 1:]).sum(dims),
                ],
                dim=1,
            ).to(w.dtype)
        return grad_x, grad_w


class _AttentionGateFunction(torch.autograd.Function):
    """out = x * (mean_i sigmoid(BN(conv1x1(m_i))) + 1/2): the L-TDM's expand conv, BN, sigmoid and gate.

    x: (N*T, C, H, W); each m_i: (N*T, C/r, H, W), one per direction; ``weight``: the expand conv's
    (C, C/r, 1, 1). Plain autograd keeps about six C-channel tensors per call for backward (each direction's
    conv output for BN, each sigmoid output, the gate); this function keeps only x, the m_i (C/r channels,
    which the expand conv keeps anyway) and BN's per-channel statistics, and recomputes the 1x1 conv, the
    BN affine map and the sigmoid in backward, a small share of the block's work.
    Eq. 6 with the residual: x + x*mean_i(sigmoid_i - 1/2) = x * (mean_i sigmoid_i + 1/2), one pass over x.
    BN is run as BatchNorm2d.forward runs it (batch statistics in training, running statistics updated
    here, once per direction, in the directions' order); backward never touches the running statistics.
    """

    @staticmethod
    def forward(
        ctx,
        x: torch.Tensor,
        weight: torch.Tensor,
        bn_weight: torch.Tensor | None,
        bn_bias: torch.Tensor | None,
        bn: nn.BatchNorm2d,
        *maps: torch.Tensor,
    ) -> torch.Tensor:
        batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
        sig, stats = [], []
        for m in maps:
            e = F.conv2d(m, weight)
            a, mean, invstd = torch.ops.aten.native_batch_norm(
                e, bn_weight, bn_bias, *_bn_running(bn), batch_stats, _bn_step(bn), bn.eps
            )
            ctx.dtypes = (e.dtype, a.dtype)  # under autocast the conv runs in the low-precision type
            del e
            sig.append(torch.sigmoid_(a))
            stats += [mean, invstd]
        gate = sig[0].add_(0.5) if len(sig) == 1 else sig[0].add_(sig[1]).mul_(0.5).add_(0.5)
        del sig
        ctx.batch_stats, ctx.eps = batch_stats, bn.eps
        # eval-mode statistics are copied: nothing may change them between forward and backward
        running: tuple[torch.Tensor | None, ...] = (None, None)
        if not batch_stats:
            running = tuple(None if t is None else t.clone() for t in _bn_running(bn))
        ctx.save_for_backward(x, weight, bn_weight, bn_bias, *running, *stats, *maps)
        return x * gate

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, bn_weight, bn_bias, r_mean, r_var, *rest = ctx.saved_tensors
        k = len(rest) // 3
        stats, maps = rest[: 2 * k], rest[2 * k :]
        needs = ctx.needs_input_grad
        e_dtype, a_dtype = ctx.dtypes
        weight_c = weight.to(e_dtype)
        grad_params: list[torch.Tensor | None] = [None, None, None]
        grad_maps: list[torch.Tensor | None] = []
        # d out / d sigmoid_i = x * grad / k
        grad_sig = (grad * x).to(a_dtype)
        if k == 2:
            grad_sig.mul_(0.5)
        gate = None
        for i, m in enumerate(maps):
            mean, invstd = stats[2 * i], stats[2 * i + 1]
            if not ctx.batch_stats:
                mean, invstd = r_mean, (r_var + ctx.eps).rsqrt()
            m_c = m.to(e_dtype)
            e = F.conv2d(m_c, weight_c)
            # BN's affine map a = e * scale + shift, recomputed in one pass
            scale = invstd if bn_weight is None else bn_weight * invstd
            shift = -mean * scale if bn_bias is None else bn_bias - mean * scale
            shape = (1, -1, 1, 1)
            s = torch.addcmul(shift.view(shape), e, scale.view(shape)).to(a_dtype).sigmoid_()
            grad_a = torch.ops.aten.sigmoid_backward(grad_sig, s)
            gate = s if gate is None else gate.add_(s)
            del s
            need_e = needs[1] or needs[5 + i]
            grad_e, g_bw, g_bb = torch.ops.aten.native_batch_norm_backward(
                grad_a,
                e,
                bn_weight,
                r_mean,
                r_var,
                stats[2 * i],
                stats[2 * i + 1],
                ctx.batch_stats,
                ctx.eps,
                [need_e, needs[2], needs[3]],
            )
            del grad_a, e
            g_m = g_w = None
            if need_e:
                g_m, g_w, _ = torch.ops.aten.convolution_backward(
                    grad_e,
                    m_c,
                    weight_c,
                    None,
                    [1, 1],
                    [0, 0],
                    [1, 1],
                    False,
                    [0, 0],
                    1,
                    [needs[5 + i], needs[1], False],
                )
            grad_maps.append(None if g_m is None else g_m.to(m.dtype))
            g_w = None if g_w is None else g_w.to(weight.dtype)
            for j, g in enumerate((g_w, g_bw, g_bb)):
                if needs[1 + j] and g is not None:
                    grad_params[j] = g if grad_params[j] is None else grad_params[j] + g
        grad_x = None
        if needs[0]:
            assert gate is not None
            gate = gate.mul_(0.5).add_(0.5) if k == 2 else gate.add_(0.5)
            grad_x = (grad * gate).to(x.dtype)
        return (grad_x, *grad_params, None, *grad_maps)


def _bn_running(bn: nn.BatchNorm2d) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The running statistics BatchNorm's forward reads or updates (None when it keeps none)."""
    if not bn.training or bn.track_running_stats:
        return bn.running_mean, bn.running_var
    return None, None


def _bn_step(bn: nn.BatchNorm2d) -> float:
    """BatchNorm2d.forward's bookkeeping: count the batch, return the running-statistics momentum."""
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    return factor


class TemporalConv(nn.Module):
    """Depthwise convolution over segments, kernel 3, zero padding, no bias (the released ``ShiftModule``).

    (N*T, C, H, W) -> (N*T, C, H, W): out[t] = w[c,0]*x[t-1] + w[c,1]*x[t] + w[c,2]*x[t+1].

    ``weight`` has the shape of the released Conv1d weight, (C, 1, 3). It is computed as three
    multiply-adds on shifted views of the input instead of permuting to (N*H*W, C, T) and back, which costs
    two full copies per call in the released code.
    Initialised as TSM's shift: channels [0, C/8) read t+1, [C/8, 2C/8) read t-1, the rest are identity.
    """

    def __init__(self, channels: int, num_segments: int, init: TemporalInit = "shift", fold_div: int = 8):
        super().__init__()
        self.num_segments = num_segments
        self.weight = nn.Parameter(torch.zeros(channels, 1, 3))
        with torch.no_grad():
            if init == "shift":
                fold = channels // fold_div
                self.weight[:fold, 0, 2] = 1.0
                self.weight[fold : 2 * fold, 0, 0] = 1.0
                self.weight[2 * fold :, 0, 1] = 1.0
            else:
                self.weight[:, 0, 1] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        x5 = x.view(nt // self.num_segments, self.num_segments, c, h, w)
        weight = self.weight.view(c, 3).to(x.dtype)
        return _TemporalConvFunction.apply(x5, weight).view(nt, c, h, w)


class LongTermTDM(nn.Module):
    """Bidirectional multi-scale temporal-difference attention (the released ``mSEModule``).

    (N*T, C, H, W) -> (N*T, C, H, W). With F the features reduced to C/r channels (1x1 conv + BN),
    S = depthwise 3x3 conv of F (spatial smoothing, Eq. 4):

        forward  D[t] = S[t+1] - F[t]   (D[T-1] = 0)
        backward D[t] = S[t-1] - F[t]   (D[0] = 0)
        M = (D + up(BN(conv3x3(avgpool2(D)))) + BN(conv3x3(D))) / 3        (multi-scale, Eq. 5)
        A = sigmoid(BN(conv1x1_{C/r -> C}(M))) - 1/2
        out = x + x * (A_forward + A_backward) / 2                          (Eq. 6 + residual)

    The branch convs and BNs are shared by both directions; each BN is applied to each direction separately,
    as in the released code (separate batch statistics in training, two running-stat updates per step).
    Ablations (Table 1a, 1c): ``operator="avg"`` uses (S[t+1] + F[t]) / 2; ``multiscale=False`` keeps only
    D; ``bidirectional=False`` keeps only the forward direction; ``fusion="add"`` returns x + mean of the
    un-squashed BN(conv1x1(M)); ``fusion="channel_attention"`` pools M over space before the 1x1 conv.
    """

    def __init__(
        self,
        channels: int,
        num_segments: int,
        reduction: int = 16,
        operator: LTDMOperator = "diff",
        multiscale: bool = True,
        bidirectional: bool = True,
        fusion: LTDMFusion = "attention",
    ) -> None:
        super().__init__()
        if num_segments < 2:
            raise ValueError(f"the L-TDM needs at least 2 segments, got {num_segments}")
        reduced = max(1, channels // reduction)
        self.num_segments = num_segments
        self.operator = operator
        self.multiscale = multiscale
        self.bidirectional = bidirectional
        self.fusion = fusion
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=False)
        self.reduce_bn = nn.BatchNorm2d(reduced)
        self.smooth = nn.Conv2d(reduced, reduced, 3, padding=1, groups=reduced, bias=False)
        if multiscale:
            self.pooled_conv = nn.Conv2d(reduced, reduced, 3, padding=1, bias=False)
            self.pooled_bn = nn.BatchNorm2d(reduced)
            self.full_conv = nn.Conv2d(reduced, reduced, 3, padding=1, bias=False)
            self.full_bn = nn.BatchNorm2d(reduced)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(channels)

    def _difference(self, f: torch.Tensor, s: torch.Tensor, forward: bool) -> torch.Tensor:
        """D of one direction, (N*T, C/r, H, W), zero at the clip boundary."""
        nt = f.shape[0]
        f5 = f.view(nt // self.num_segments, self.num_segments, *f.shape[1:])
        s5 = s.view_as(f5)
        other, here = (s5[:, 1:], f5[:, :-1]) if forward else (s5[:, :-1], f5[:, 1:])
        value = other - here if self.operator == "diff" else (other + here) * 0.5
        d = torch.zeros_like(f5)  # keeps f's memory format (channels_last stays channels_last)
        if forward:
            d[:, :-1] = value
        else:
            d[:, 1:] = value
        return d.view_as(f)

    def _multiscale(self, d: torch.Tensor) -> torch.Tensor:
        """(N*T, C/r, H, W) -> M (Eq. 5), or (N*T, C/r, 1, 1) for channel attention."""
        if self.multiscale:
            pooled = self.pooled_bn(self.pooled_conv(F.avg_pool2d(d, 2)))
            pooled = F.interpolate(pooled, size=d.shape[-2:], mode="nearest")
            d = torch.add(d, pooled).add_(self.full_bn(self.full_conv(d))).mul_(1.0 / 3.0)
        if self.fusion == "channel_attention":
            d = d.mean(dim=(2, 3), keepdim=True)
        return d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.reduce_bn(self.reduce(x))
        s = self.smooth(f)
        # the directions run one after the other through the shared convs and BNs, like the released code:
        # each BN call normalises one direction with its own batch statistics
        m_fwd = self._multiscale(self._difference(f, s, forward=True))
        m_bwd = self._multiscale(self._difference(f, s, forward=False)) if self.bidirectional else None
        maps = (m_fwd,) if m_bwd is None else (m_fwd, m_bwd)
        if self.fusion == "add":
            a = [self.expand_bn(self.expand(m)) for m in maps]
            return x + (a[0] if len(a) == 1 else (a[0] + a[1]) * 0.5)
        if self.fusion == "channel_attention":
            # x + x*(sigmoid(a) - 1/2) = x * (sigmoid(a) + 1/2); for two directions
            # x + x*((sig_f - 1/2) + (sig_b - 1/2))/2 = x * ((sig_f + sig_b)/2 + 1/2): one pass over x
            sig = [torch.sigmoid(self.expand_bn(self.expand(m))) for m in maps]
            return x * (sig[0] + 0.5 if len(sig) == 1 else torch.add(sig[0], sig[1]).mul_(0.5).add_(0.5))
        # the same function, keeping far less for backward (see _AttentionGateFunction)
        return _AttentionGateFunction.apply(
            x, self.expand.weight, self.expand_bn.weight, self.expand_bn.bias, self.expand_bn, *maps
        )


class ShortTermTDM(nn.Module):
    """The S-TDM stream: stacked RGB differences -> half resolution -> its own stem and ResNet stages.

    ``stem(frames)``: (N*T, 5, 3, H, W) -> (N*T, C0, H/8, W/8):
        D = [x2-x1, x3-x2, x4-x3, x5-x4] (12 ch; 15 stacked frames for ``input="stack"``)
        -> avgpool 2x2 -> conv 7x7/2 (``conv1``) + BN + ReLU -> maxpool 3x3/2.
    Average pooling is linear, so the frames are pooled before they are differenced (same function, a
    quarter of the subtraction work). ``layers[i]`` are the stream's copies of ResNet stages layer1..,
    each applied before the next fusion.
    """

    def __init__(self, stem_channels: int, layers: Sequence[nn.Module], input: STDMInput = "diff") -> None:
        super().__init__()
        self.input = input
        in_channels = 12 if input == "diff" else 15
        self.conv1 = nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.layers = nn.ModuleList(layers)

    def stem(self, frames: torch.Tensor) -> torch.Tensor:
        nt, five, three, h, w = frames.shape
        pooled = F.avg_pool2d(frames.reshape(nt, five * three, h, w), 2)
        if self.input == "diff":
            p = pooled.view(nt, five, three, *pooled.shape[-2:])
            pooled = (p[:, 1:] - p[:, :-1]).view(nt, (five - 1) * three, *pooled.shape[-2:])
        x = F.relu(self.bn1(self.conv1(pooled)), inplace=True)
        return F.max_pool2d(x, 3, stride=2, padding=1)


def fuse(x: torch.Tensor, h: torch.Tensor, form: STDMFusion, weights: tuple[float, float]) -> torch.Tensor:
    """Lateral S-TDM fusion into the RGB stream; x: (N*T, C, H, W), h: (N*T, C, h, w), usually h = H/2.

    ``add`` (the paper's F + H, the released a*x + b*up(h)) upsamples h with nearest neighbours. The
    attention forms of Table 1b use sigmoid(up(h)) (spatio-temporal) or sigmoid(spatial mean of h) (channel)
    as the map; the paper does not spell these out, this is our reading.
    """
    if form == "channel_mul" or form == "add_channel_mul":
        attention = torch.sigmoid(h.mean(dim=(2, 3), keepdim=True))
        return x * attention if form == "channel_mul" else x + x * attention
    up = F.interpolate(h, size=x.shape[-2:], mode="nearest")
    if form == "add":
        a, b = weights
        return torch.add(x * a, up, alpha=b)
    attention = torch.sigmoid(up)
    return x * attention if form == "mul" else x + x * attention
