"""Random weights in the layout of the checkpoints released with the paper, to check the import
(official.py) against the released code without downloading a checkpoint: tests/test_checkpoint.py,
tests/test_evaluate_models.py, benchmarks/compare_official.py.

    random_official_state_dict(num_classes, depths, seed)
      -> {"module.base_model.layer1_bak.0.conv1.weight": tensor, ...}
      every key the released TDN-ResNet has (biased convs, BN running statistics, mSEModule, conv1_temp),
      random values from a seeded generator
"""

from __future__ import annotations

import math

import torch

P = "module.base_model."  # the released keys' prefix (DataParallel + TSN wrapper)


def random_official_state_dict(
    num_classes: int, depths: tuple[int, int, int, int] = (3, 4, 6, 3), seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random weights under the released TDN's key names: biased convs, random BN statistics, conv1_temp.
    ``depths``: blocks per stage, (3, 4, 6, 3) for ResNet-50, (3, 4, 23, 3) for ResNet-101."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(name: str, cout: int, cin: int, k: int, bias: bool = True) -> None:
        sd[name + ".weight"] = torch.randn(cout, cin, k, k, generator=g) * math.sqrt(1.0 / (cin * k * k))
        if bias:
            sd[name + ".bias"] = torch.randn(cout, generator=g) * 0.2

    def bn(name: str, c: int) -> None:
        sd[name + ".weight"] = torch.rand(c, generator=g) * 0.5 + 0.75
        sd[name + ".bias"] = torch.randn(c, generator=g) * 0.1
        sd[name + ".running_mean"] = torch.randn(c, generator=g) * 0.2
        sd[name + ".running_var"] = torch.rand(c, generator=g) + 0.5
        sd[name + ".num_batches_tracked"] = torch.tensor(123)

    def mse(prefix: str, c: int) -> None:
        r = c // 16
        conv(prefix + "conv1", r, c, 1, bias=False)
        bn(prefix + "bn1", r)
        sd[prefix + "conv2.weight"] = torch.randn(r, 1, 3, 3, generator=g) / 3
        conv(prefix + "conv3_smallscale2", r, r, 3, bias=False)
        bn(prefix + "bn3_smallscale2", r)
        conv(prefix + "conv3_smallscale4", r, r, 3, bias=False)
        bn(prefix + "bn3_smallscale4", r)
        conv(prefix + "conv3", c, r, 1, bias=False)
        bn(prefix + "bn3", c)

    def layer(name: str, inplanes: int, planes: int, blocks: int, stride: int, temporal: bool) -> int:
        for i in range(blocks):
            pre = f"{name}.{i}."
            conv(pre + "conv1", planes, inplanes, 1)
            bn(pre + "bn1", planes)
            if temporal:
                mse(pre + "mse.", planes)
                sd[pre + "shift.conv.weight"] = torch.randn(planes, 1, 3, generator=g) * 0.5
            conv(pre + "conv2", planes, planes, 3)
            bn(pre + "bn2", planes)
            conv(pre + "conv3", planes * 4, planes, 1)
            bn(pre + "bn3", planes * 4)
            if i == 0:
                conv(pre + "downsample.0", planes * 4, inplanes, 1)
                bn(pre + "downsample.1", planes * 4)
            inplanes = planes * 4
        return inplanes

    conv(P + "conv1", 64, 3, 7)
    bn(P + "bn1", 64)
    conv(P + "conv1_temp", 64, 3, 7)
    conv(P + "conv1_5.0", 64, 12, 7, bias=False)
    bn(P + "conv1_5.1", 64)
    layer(P + "resnext_layer1", 64, 64, depths[0], 1, False)
    c = layer(P + "layer1_bak", 64, 64, depths[0], 1, False)
    c = layer(P + "layer2_bak", c, 128, depths[1], 2, True)
    c = layer(P + "layer3_bak", c, 256, depths[2], 2, True)
    c = layer(P + "layer4_bak", c, 512, depths[3], 2, True)
    sd["module.new_fc.weight"] = torch.randn(num_classes, c, generator=g) * 0.05
    sd["module.new_fc.bias"] = torch.randn(num_classes, generator=g) * 0.1
    return sd
