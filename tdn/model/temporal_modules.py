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

from tdn.model.attention_gate import AttentionGateFunction, bn_uses_batch_stats, folded_gate, pointwise_conv
from tdn.model.temporal_ops import (
    TemporalConvFunction,
    TemporalDifferenceFunction,
    UpsampleAddFunction,
    sum_2x2,
    widened,
)

LTDMOperator = Literal["diff", "avg"]  # Table 1a: temporal difference, or the average of the two segments
LTDMFusion = Literal["attention", "add", "channel_attention"]  # Table 1c: F + F*G, F + G, F + F*G_channel
STDMInput = Literal["diff", "stack"]  # Table 1a: 4 stacked RGB differences (12 ch), or the 5 frames (15 ch)
STDMFusion = Literal["add", "mul", "add_mul", "channel_mul", "add_channel_mul"]  # Table 1b
TemporalInit = Literal["shift", "identity"]


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
        return TemporalConvFunction.apply(x5, weight).view(nt, c, h, w)


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
    How it runs (same function): both directions' D are written into one (2*N*T, C/r, H, W) tensor
    (``temporal_ops.TemporalDifferenceFunction``) that goes through each branch conv in one call; the 1x1
    convs are batched matrix products and the gate (expand conv, BN, sigmoids, Eq. 6) is
    ``attention_gate.AttentionGateFunction`` in training, ``attention_gate.folded_gate`` at inference.
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

    def _multiscale(self, d: torch.Tensor, directions: int) -> torch.Tensor:
        """D of all directions (k*N*T, C/r, H, W) -> M (Eq. 5), or (k*N*T, C/r, 1, 1) for channel attention.

        Both directions go through each shared conv in one call; each BN still sees one direction at a time
        when it uses batch statistics (training), exactly as the released code's separate calls.
        """
        if self.multiscale:
            pooled = _per_direction(self.pooled_bn, self.pooled_conv(F.avg_pool2d(d, 2)), directions)
            pooled = F.interpolate(pooled, size=d.shape[-2:], mode="nearest")
            full = _per_direction(self.full_bn, self.full_conv(d), directions)
            d = torch.add(d, pooled).add_(full).mul_(1.0 / 3.0)
        if self.fusion == "channel_attention":
            d = d.mean(dim=(2, 3), keepdim=True)
        return d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.reduce_bn(pointwise_conv(x, self.reduce.weight))
        s = self.smooth(f)
        k = 2 if self.bidirectional else 1
        d = TemporalDifferenceFunction.apply(f, s, self.num_segments, k, self.operator == "avg")
        m = self._multiscale(d, k)
        if self.fusion == "attention":
            if not bn_uses_batch_stats(self.expand_bn):
                return folded_gate(x, m, self.expand, self.expand_bn, k)
            # the same function, keeping far less for backward (see AttentionGateFunction)
            return AttentionGateFunction.apply(
                x, m, self.expand.weight, self.expand_bn.weight, self.expand_bn.bias, self.expand_bn, k
            )
        a = _per_direction(self.expand_bn, self.expand(m), k).split(x.shape[0])
        if self.fusion == "add":
            return x + (a[0] if k == 1 else (a[0] + a[1]) * 0.5)
        # channel attention: x + x*(sigmoid(a) - 1/2) = x * (sigmoid(a) + 1/2); for two directions
        # x + x*((sig_f - 1/2) + (sig_b - 1/2))/2 = x * ((sig_f + sig_b)/2 + 1/2): one pass over x
        sig = [torch.sigmoid(v) for v in a]
        return x * (sig[0] + 0.5 if k == 1 else torch.add(sig[0], sig[1]).mul_(0.5).add_(0.5))


def _per_direction(bn: nn.BatchNorm2d, y: torch.Tensor, directions: int) -> torch.Tensor:
    """BN of (k*N*T, C, H, W); with batch statistics one call per direction (separate statistics)."""
    if directions == 1 or not bn_uses_batch_stats(bn):
        return bn(y)
    return torch.cat([bn(part) for part in y.chunk(directions)])


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
        pooled = _avg_pool2(frames.reshape(nt, five * three, h, w))
        if self.input == "diff":
            p = pooled.view(nt, five, three, *pooled.shape[-2:])
            pooled = (p[:, 1:] - p[:, :-1]).view(nt, (five - 1) * three, *pooled.shape[-2:])
        x = F.relu(self.bn1(self.conv1(pooled)), inplace=True)
        return _max_pool_3x3s2(x)


def _max_pool_3x3s2(x: torch.Tensor) -> torch.Tensor:
    """F.max_pool2d(x, 3, 2, 1); on CPU through channels_last, whose kernel vectorises over channels.

    Same values and the same argmax per window (ties too), so the same gradient. Measured (1 thread) on
    (8, 64, 56, 56): 16.0 ms in NCHW, 5.9 ms with both conversions; forward + backward 20.9 vs 17.4 ms.
    """
    if x.device.type != "cpu" or x.is_contiguous(memory_format=torch.channels_last):
        return F.max_pool2d(x, 3, stride=2, padding=1)
    out = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), 3, stride=2, padding=1)
    return out.contiguous()


def _avg_pool2(x: torch.Tensor) -> torch.Tensor:
    """F.avg_pool2d(x, 2); for an NCHW tensor of even size as two strided additions (the same four terms).

    The pooling kernel walks an NCHW tensor one 2x2 window at a time: (8, 15, 224, 224) takes 18 ms (1 thread),
    adding the row pairs and then the column pairs 4.4 ms.
    """
    if x.shape[-2] % 2 or x.shape[-1] % 2 or not x.is_contiguous():
        return F.avg_pool2d(x, 2)
    return sum_2x2(x).mul_(0.25)


def fuse(
    x: torch.Tensor, h: torch.Tensor, form: STDMFusion, weights: tuple[float, float], inplace: bool = False
) -> torch.Tensor:
    """Lateral S-TDM fusion into the RGB stream; x: (N*T, C, H, W), h: (N*T, C, h, w), usually h = H/2.

    ``add`` (the paper's F + H, the released a*x + b*up(h)) upsamples h with nearest neighbours. The
    attention forms of Table 1b use sigmoid(up(h)) (spatio-temporal) or sigmoid(spatial mean of h) (channel)
    as the map; the paper does not spell these out, this is our reading. ``inplace`` (no autograd graph
    only) lets the ``add`` form write its result into x.
    """
    if form == "channel_mul" or form == "add_channel_mul":
        attention = torch.sigmoid(h.mean(dim=(2, 3), keepdim=True))
        return x * attention if form == "channel_mul" else x + x * attention
    if form == "add":
        return _add_upsampled(x, h, weights, inplace)
    attention = torch.sigmoid(F.interpolate(h, size=x.shape[-2:], mode="nearest"))
    return x * attention if form == "mul" else x + x * attention


def _add_upsampled(
    x: torch.Tensor, h: torch.Tensor, weights: tuple[float, float], inplace: bool
) -> torch.Tensor:
    """a*x + b*up(h), up = nearest-neighbour upsampling to x's size (the released fusion)."""
    a, b = weights
    if tuple(x.shape[-2:]) == (2 * h.shape[-2], 2 * h.shape[-1]) and x.is_contiguous():
        if inplace and not torch.is_grad_enabled():
            n, c, hh, hw = h.shape
            xv = x.view(n, c, hh, 2, 2 * hw)
            torch.add(widened(h, b), xv, alpha=a, out=xv)
            return x
        return UpsampleAddFunction.apply(x, h, a, b)
    return torch.add(x * a, F.interpolate(h, size=x.shape[-2:], mode="nearest"), alpha=b)
