"""The TDN video model, its baselines and ablations, all behind one input contract.

    x: (N, T, 5, 3, H, W) float, ImageNet-normalised RGB; T segments of 5 consecutive frames, centre at 2
    -> logits (N, num_classes): the mean over segments of the per-segment logits (no softmax)

    RGB stream:   x[:, :, 2] ─ conv1 ─ bn1 ─ relu ─ maxpool ─(+S)─ layer1 ─(+S)─ layer2 ─ layer3 ─ layer4
                                                       │               │
    S-TDM stream: x ─ diff ─ avgpool ─ conv1 ─ bn ─ relu ─ maxpool ─ layer1'     (``stdm``; fusion ``+S``)
    layer2..4 blocks carry L-TDM + temporal conv (``tdn/model/resnet.py`` shows where)
    head: avgpool (N*T, C) ─ dropout ─ fc ─ view (N, T, classes) ─ mean over T

Variants (``ModelConfig.variant``), the rows of the paper's Table 1e:
    "tsn"    plain 2D ResNet on the centre frames, average consensus
    "tconv"  TSN + temporal conv in stages 3-5 (Table 1e first row)
    "stdm"   tconv + S-TDM in stages 1-2
    "ltdm"   tconv + L-TDM in stages 3-5
    "tdn"    S-TDM in stages 1-2, L-TDM + temporal conv in stages 3-5 (the paper's model)
Stages are numbered as the paper does: 1 = conv1 (stem), 2..5 = layer1..layer4.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from tdn.model.resnet import Arch, arch_spec, init_conv_bn, make_stage, stage_planes
from tdn.model.temporal_modules import (
    LongTermTDM,
    LTDMFusion,
    LTDMOperator,
    ShortTermTDM,
    STDMFusion,
    STDMInput,
    TemporalConv,
    TemporalInit,
    fuse,
)

Variant = Literal["tdn", "tsn", "tconv", "stdm", "ltdm"]


@dataclass
class ModelConfig:
    """Everything that defines a model's function and parameter shapes.

    Ablation options (``None`` = the variant's default):
      s_tdm_stages: S-TDM fused after stages 1..k (k in 0..3; Table 1d); tdn/stdm default 2, else 0.
      l_tdm_stages: stages (2..5) whose blocks get the L-TDM (tdn/ltdm) or only the temporal conv
                    (tconv/stdm); default (3, 4, 5); empty for tsn. Table 1d: (2,3,4,5) / (3,4,5) / (4,5).
      s_tdm_input:  "diff" or "stack" (Table 1a, S-TDM column).
      s_tdm_fusion: Table 1b forms: "add" (F + H), "mul" (F*H), "add_mul" (F + F*H),
                    "channel_mul", "add_channel_mul".
      l_tdm_operator: "diff" or "avg" (Table 1a, L-TDM column).
      l_tdm_fusion, l_tdm_multiscale, l_tdm_bidirectional: Table 1c.
      temporal_init: temporal conv initialisation, "shift" (TSM, released) or "identity".
    fusion_weights: (a, b) of the S-TDM fusion a*x + b*h; None = (0.5, 0.5) for T == 8, else (0.75, 0.25).

    Where the weights come from is not part of it: ImageNet or a checkpoint is a training step
    (tdn.training.config.InitConfig), a trained model's weights are in its checkpoint.
    """

    arch: Arch = "resnet50"  # ResNet backbone
    num_classes: int = 400  # classifier outputs
    num_segments: int = 8  # segments T per clip (each a 5-frame window)
    variant: Variant = "tdn"  # tdn, or an ablation / baseline (tsn: no temporal modules)
    width: float = 1.0  # channel width multiplier (0.25: the tiny CPU model)
    dropout: float = 0.5  # dropout before the classifier
    # (a, b) of S-TDM's a*x + b*h; None: (0.5, 0.5) at T 8, else (0.75, 0.25)
    fusion_weights: tuple[float, float] | None = None
    s_tdm_stages: int | None = None  # S-TDM after stages 1..k (Table 1d); None: the variant's
    l_tdm_stages: tuple[int, ...] | None = None  # stages (2..5) with L-TDM; None: the variant's (3, 4, 5)
    s_tdm_input: STDMInput = "diff"  # S-TDM input: diff or stack (Table 1a)
    s_tdm_fusion: STDMFusion = "add"  # S-TDM fusion form (Table 1b)
    l_tdm_operator: LTDMOperator = "diff"  # L-TDM operator: diff or avg (Table 1a)
    l_tdm_fusion: LTDMFusion = "attention"  # L-TDM fusion (Table 1c)
    l_tdm_multiscale: bool = True  # L-TDM multi-scale branches (Table 1c)
    l_tdm_bidirectional: bool = True  # L-TDM in both temporal directions (Table 1c)
    temporal_init: TemporalInit = "shift"  # temporal conv init: shift (TSM, released) or identity

    def __post_init__(self) -> None:
        if self.fusion_weights is not None:
            weights = tuple(float(v) for v in self.fusion_weights)
            if len(weights) != 2:
                raise ValueError(f"fusion_weights must be two numbers (a, b), got {weights}")
            self.fusion_weights = (weights[0], weights[1])
        if self.l_tdm_stages is not None:
            self.l_tdm_stages = tuple(sorted(int(s) for s in self.l_tdm_stages))
        arch_spec(self.arch)
        if self.variant not in ("tdn", "tsn", "tconv", "stdm", "ltdm"):
            raise ValueError(f"unknown variant {self.variant!r}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.width <= 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        needs_time = self.variant != "tsn"
        if needs_time and self.num_segments < 2:
            raise ValueError(f"variant {self.variant!r} needs num_segments >= 2, got {self.num_segments}")
        if self.num_segments < 1:
            raise ValueError(f"num_segments must be >= 1, got {self.num_segments}")
        s, long_stages = self.stdm_stages(), self.long_stages()
        if not 0 <= s <= 3:
            raise ValueError(f"s_tdm_stages must be in 0..3, got {s}")
        if self.variant in ("tsn", "tconv", "ltdm") and s != 0:
            raise ValueError(f"variant {self.variant!r} has no S-TDM; s_tdm_stages must be 0 or unset")
        if self.variant in ("tdn", "stdm") and s == 0:
            raise ValueError(f"variant {self.variant!r} needs s_tdm_stages >= 1")
        if self.variant == "tsn" and long_stages:
            raise ValueError("variant 'tsn' has no temporal modules; l_tdm_stages must be empty or unset")
        bad = [st for st in long_stages if st not in (2, 3, 4, 5)]
        if bad:
            raise ValueError(f"l_tdm_stages must be among 2..5 (layer1..layer4), got {bad}")
        if any(st <= s for st in long_stages):
            raise ValueError(f"L-TDM stages {long_stages} overlap the S-TDM stages 1..{s}")

    def stdm_stages(self) -> int:
        if self.s_tdm_stages is not None:
            return self.s_tdm_stages
        return 2 if self.variant in ("tdn", "stdm") else 0

    def long_stages(self) -> tuple[int, ...]:
        if self.l_tdm_stages is not None:
            return self.l_tdm_stages
        return () if self.variant == "tsn" else (3, 4, 5)

    def smallest_view(self) -> int:
        """The smallest crop side (px) the network takes. Stage s (2..5) sees ceil(H / 2**s) px (the stem's
        stride-2 conv and max pool, then one stride-2 stage each); a multi-scale L-TDM halves its map
        (avg_pool2d 2), so it needs 2 px there: H > 2**s for its deepest stage, 33 px for the paper's TDN. The
        S-TDM halves the frame differences at the input: 2 px. (tests/test_model.py checks each ablation
        against real forwards on both sides of its answer.)"""
        pooled_long = self.variant in ("tdn", "ltdm") and self.l_tdm_multiscale and self.long_stages()
        if pooled_long:
            return 2 ** max(self.long_stages()) + 1
        return 2 if self.stdm_stages() > 0 else 1

    def resolved_fusion_weights(self) -> tuple[float, float]:
        if self.fusion_weights is not None:
            return self.fusion_weights
        return (0.5, 0.5) if self.num_segments == 8 else (0.75, 0.25)


class TDNNet(nn.Module):
    """TDN and its baselines; see the module docstring for the layout. Build with ``build_model``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.num_segments = cfg.num_segments
        self.fusion_weights = cfg.resolved_fusion_weights()
        self.s_tdm_fusion = cfg.s_tdm_fusion
        block, depths = arch_spec(cfg.arch)
        stem, *planes = stage_planes(cfg.width)
        use_ltdm = cfg.variant in ("tdn", "ltdm")
        long_stages = cfg.long_stages()

        def temporal_for(stage: int):
            def factory(channels: int) -> tuple[nn.Module | None, nn.Module | None]:
                if stage not in long_stages:
                    return None, None
                ltdm = None
                if use_ltdm:
                    ltdm = LongTermTDM(
                        channels,
                        cfg.num_segments,
                        operator=cfg.l_tdm_operator,
                        multiscale=cfg.l_tdm_multiscale,
                        bidirectional=cfg.l_tdm_bidirectional,
                        fusion=cfg.l_tdm_fusion,
                    )
                return ltdm, TemporalConv(channels, cfg.num_segments, cfg.temporal_init)

            return factory

        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = stem
        stages = []
        for i, (p, n) in enumerate(zip(planes, depths)):
            stage, channels = make_stage(block, channels, p, n, 1 if i == 0 else 2, temporal_for(i + 2))
            stages.append(stage)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feature_dim = channels

        s = cfg.stdm_stages()
        self.stdm: ShortTermTDM | None = None
        if s >= 1:
            # the difference stream's own plain copies of layer1.. (the released "resnext_layer1")
            diff_layers, c = [], stem
            for i in range(s - 1):
                layer, c = make_stage(block, c, planes[i], depths[i], 1 if i == 0 else 2)
                diff_layers.append(layer)
            self.stdm = ShortTermTDM(stem, diff_layers, cfg.s_tdm_input)

        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(self.feature_dim, cfg.num_classes)
        init_conv_bn(self)
        nn.init.normal_(self.fc.weight, 0.0, 0.001)
        nn.init.zeros_(self.fc.bias)

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 6 or x.shape[2] != 5 or x.shape[3] != 3 or x.shape[1] != self.num_segments:
            raise InputShapeError(
                f"expected input (N, T={self.num_segments}, 5, 3, H, W), got {tuple(x.shape)}"
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, 5, 3, H, W) -> per-segment features (N*T, C, H/32, W/32)."""
        self.check_input(x)
        n, t, _, _, h, w = x.shape
        frames = x.reshape(n * t, 5, 3, h, w)
        out = self.maxpool(self.relu(self.bn1(self.conv1(frames[:, 2]))))
        layers = (self.layer1, self.layer2, self.layer3, self.layer4)
        if self.stdm is None:
            for layer in layers:
                out = layer(out)
            return out
        diff = self.stdm.stem(frames)
        # without an autograd graph the fusion may write into the RGB stream's tensor (no one else reads it)
        inplace = not torch.is_grad_enabled()
        out = fuse(out, diff, self.s_tdm_fusion, self.fusion_weights, inplace)
        for i, layer in enumerate(layers):
            out = layer(out)
            if i < len(self.stdm.layers):
                diff = self.stdm.layers[i](diff)
                out = fuse(out, diff, self.s_tdm_fusion, self.fusion_weights, inplace)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        feats = torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)
        logits = self.fc(self.dropout(feats))
        return logits.view(n, self.num_segments, -1).mean(dim=1)


class InputShapeError(ValueError):
    """A batch of another shape than the model takes: the data was made for another model (never retried)."""


def build_model_from_config(cfg: ModelConfig) -> TDNNet:
    """A freshly initialised model (weights from files: tdn.checkpoints)."""
    return TDNNet(cfg)


def too_small_for(cfg: ModelConfig, size: int) -> str:
    """Why the network of ``cfg`` cannot take ``size`` px views, in one line; "" when it can."""
    smallest = cfg.smallest_view()
    if size >= smallest:
        return ""
    return (
        f"views of {size} px are too small for this model: a {cfg.variant} network takes {smallest} px or more "
        "(its temporal modules halve feature maps that would be a single cell)"
    )


def build_model(
    arch: Arch, num_classes: int, num_segments: int, variant: Variant = "tdn", **options: object
) -> TDNNet:
    """``build_model("resnet50", 400, 8)``; ``options`` are the other ``ModelConfig`` fields."""
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"unknown model option(s) {unknown}; known: {sorted(names)}")
    cfg = ModelConfig(
        arch=arch,
        num_classes=num_classes,
        num_segments=num_segments,
        variant=variant,
        **options,  # type: ignore[arg-type]
    )
    return build_model_from_config(cfg)
