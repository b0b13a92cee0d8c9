"""ResNet-18/34/50/101 building blocks written for TDN (no torchvision).

Layout and names follow torchvision's ResNet (``conv1``, ``bn1``, ``layerK.N.conv1`` ...,
``layerK.N.downsample.{0,1}``) so an ImageNet state dict in that layout maps one-to-one. Convolutions have no
bias: every one is followed by a BatchNorm, where a bias is redundant (the official code's biases are folded
into the BN running mean on import, see ``tdn/checkpoints/official.py``).

A block can carry per-frame temporal modules that the TDN model hands in (``ltdm``: the long-term TDM,
``tconv``: the depthwise temporal convolution). They act on the block's inner features, all frames of all
clips stacked in the batch dimension, (N*T, planes, H', W'):

    Bottleneck (ResNet-50/101)              BasicBlock (ResNet-18/34)
    x ─ conv1 1x1 ─ bn1 ─ relu              x ─ conv1 3x3/s ─ bn1 ─ relu
        ─ [ltdm] ─ [tconv]                      ─ [ltdm] ─ [tconv]
        ─ conv2 3x3/s ─ bn2 ─ relu              ─ conv2 3x3 ─ bn2
        ─ conv3 1x1 ─ bn3  (+ shortcut) ─ relu  (+ shortcut) ─ relu

In a bottleneck this is exactly where the released code puts its ``mse`` and ``shift`` modules. A basic
block has no reduced inner width, so the L-TDM sits after its first 3x3 conv (which already carries the
stage's stride) and before the second: it sees ``planes`` channels at the stage's output resolution.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

Arch = Literal["resnet18", "resnet34", "resnet50", "resnet101"]

# A factory that gives a block its temporal modules for a given inner width: (ltdm, tconv), either may be None.
TemporalFactory = Callable[[int], tuple[nn.Module | None, nn.Module | None]]


def arch_spec(arch: Arch) -> tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]:
    """Block type and number of blocks per stage (layer1..layer4) of a ResNet."""
    if arch == "resnet18":
        return BasicBlock, (2, 2, 2, 2)
    if arch == "resnet34":
        return BasicBlock, (3, 4, 6, 3)
    if arch == "resnet50":
        return Bottleneck, (3, 4, 6, 3)
    if arch == "resnet101":
        return Bottleneck, (3, 4, 23, 3)
    raise ValueError(f"unknown arch {arch!r}; expected one of resnet18, resnet34, resnet50, resnet101")


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (at least 1)."""
    return max(1, int(round(channels * width)))


def init_conv_bn(module: nn.Module) -> None:
    """He init (fan-out) for convs, BN to identity: the released FBResNet's init, applied before any loading."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _no_temporal(_: int) -> tuple[nn.Module | None, nn.Module | None]:
    return None, None


class BasicBlock(nn.Module):
    """Two 3x3 convs. (N*T, inplanes, H, W) -> (N*T, planes, H/stride, W/stride)."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, temporal: TemporalFactory = _no_temporal
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.ltdm, self.tconv = temporal(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(inplanes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        if self.ltdm is not None:
            out = self.ltdm(out)
        if self.tconv is not None:
            out = self.tconv(out)
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1. (N*T, inplanes, H, W) -> (N*T, 4*planes, H/stride, W/stride)."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, temporal: TemporalFactory = _no_temporal
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.ltdm, self.tconv = temporal(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(inplanes, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        if self.ltdm is not None:
            out = self.ltdm(out)
        if self.tconv is not None:
            out = self.tconv(out)
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def _shortcut(inplanes: int, outplanes: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(
        nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False), nn.BatchNorm2d(outplanes)
    )


def make_stage(
    block: type[BasicBlock] | type[Bottleneck],
    inplanes: int,
    planes: int,
    blocks: int,
    stride: int,
    temporal: TemporalFactory = _no_temporal,
) -> tuple[nn.Sequential, int]:
    """One ResNet stage (``layerK``); returns it and its output channel count."""
    layers = [block(inplanes, planes, stride, temporal)]
    outplanes = planes * block.expansion
    for _ in range(1, blocks):
        layers.append(block(outplanes, planes, 1, temporal))
    return nn.Sequential(*layers), outplanes


def stage_planes(width: float) -> tuple[int, int, int, int, int]:
    """(stem channels, planes of layer1..layer4) under a width multiplier."""
    return (scaled(64, width), scaled(64, width), scaled(128, width), scaled(256, width), scaled(512, width))
