"""Import of the checkpoints released with the paper (TDN ``main.py``) into this project's model.

    released state_dict ("module.base_model.layer1_bak.0.conv1.weight", conv biases, mSEModule names)
      --official_key_to_ours--> our keys ("layer1.0.conv1.weight", "layer2.0.ltdm.reduce.weight", ...)
      --conv biases folded into the following BN's running mean--> check_state_dict --> TDNNet (eval mode)

``jobs/convert_checkpoint.py`` writes the result as a project checkpoint (tdn/checkpoints/project.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from tdn.checkpoints.project import (
    CheckpointError,
    check_state_dict,
    is_official_layout,
    read_torch_file,
    strict_load,
)
from tdn.model.networks import ModelConfig, TDNNet
from tdn.model.resnet import Arch

# Released mSEModule names -> ours (tdn/model/temporal_modules.py LongTermTDM).
_MSE_NAMES = {
    "conv1": "reduce",
    "bn1": "reduce_bn",
    "conv2": "smooth",
    "conv3_smallscale2": "pooled_conv",
    "bn3_smallscale2": "pooled_bn",
    "conv3_smallscale4": "full_conv",
    "bn3_smallscale4": "full_bn",
    "conv3": "expand",
    "bn3": "expand_bn",
}


def official_key_to_ours(key: str) -> str | None:
    """Map one released key (without 'module.') to ours; None when it has no counterpart."""
    if key.startswith("new_fc."):
        return "fc." + key[len("new_fc.") :]
    if not key.startswith("base_model."):
        return None
    k = key[len("base_model.") :]
    if k.startswith("fc."):  # dropout == 0 in the released code puts the classifier here
        return k
    if k.startswith("conv1_5.0."):
        return "stdm.conv1." + k[len("conv1_5.0.") :]
    if k.startswith("conv1_5.1."):
        return "stdm.bn1." + k[len("conv1_5.1.") :]
    if k.startswith("resnext_layer1."):
        return "stdm.layers.0." + k[len("resnext_layer1.") :]
    if k.startswith(("conv1.", "bn1.")):
        return k
    m = re.fullmatch(r"layer([1-4])_bak\.(\d+)\.(.+)", k)
    if m is None:
        return None
    stage, block, rest = m.groups()
    mse = re.fullmatch(r"mse\.([a-z0-9_]+)\.(.+)", rest)
    if mse is not None:
        if mse.group(1) not in _MSE_NAMES:
            return None
        rest = f"ltdm.{_MSE_NAMES[mse.group(1)]}.{mse.group(2)}"
    elif rest == "shift.conv.weight":
        rest = "tconv.weight"
    return f"layer{stage}.{block}.{rest}"


def _bn_after(conv_name: str) -> str:
    """The BN that follows a conv in our model (where the released conv bias is folded)."""
    if conv_name.endswith("downsample.0"):
        return conv_name[: -len("0")] + "1"
    head, _, last = conv_name.rpartition(".")
    m = re.fullmatch(r"conv(\d)", last)
    if m is None:
        raise CheckpointError(f"no BatchNorm known to follow {conv_name}")
    return f"{head}.bn{m.group(1)}" if head else f"bn{m.group(1)}"


def convert_official_state_dict(
    official: Mapping[str, torch.Tensor], model: nn.Module, where: str = "official checkpoint"
) -> dict[str, torch.Tensor]:
    """Translate a released ``state_dict`` to ``model``'s keys, folding conv biases into BN running means.

    BN(conv(x) + b) with running mean m equals BN'(conv(x)) with running mean m - b, exactly, in eval mode;
    in training the batch mean absorbs b either way. ``conv1_temp`` (registered, never used by the released
    forward) is skipped on purpose.
    """
    modules = dict(model.named_modules())
    out: dict[str, torch.Tensor] = {}
    biases: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for full_key, value in official.items():
        key = full_key[len("module.") :] if full_key.startswith("module.") else full_key
        if key.startswith("base_model.conv1_temp."):
            continue
        ours = official_key_to_ours(key)
        if ours is None:
            unexpected.append(full_key)
            continue
        owner, _, leaf = ours.rpartition(".")
        module = modules.get(owner)
        if leaf == "bias" and isinstance(module, nn.Conv2d) and module.bias is None:
            biases[_bn_after(owner)] = value
            continue
        out[ours] = value
    for bn, bias in biases.items():
        mean_key = f"{bn}.running_mean"
        if mean_key not in out:
            unexpected.append(f"conv bias before {bn} (no running mean for it in the file)")
            continue
        if out[mean_key].shape != bias.shape:
            raise CheckpointError(
                f"{where}: conv bias {tuple(bias.shape)} does not fit {mean_key} {tuple(out[mean_key].shape)}"
            )
        out[mean_key] = out[mean_key].float() - bias.float()
    if unexpected:
        raise CheckpointError(
            f"{where}: keys with no place in the model: {', '.join(sorted(unexpected)[:20])}"
        )
    check_state_dict(model, out, where)
    return out


def load_official_checkpoint(
    path: str, arch: Arch, num_segments: int, num_classes: int, dropout: float = 0.5
) -> TDNNet:
    """Load a checkpoint saved by the released TDN ``main.py``; returns our model in eval mode."""
    if arch not in ("resnet50", "resnet101"):
        raise CheckpointError(f"the released TDN code builds resnet50/resnet101 only, got {arch!r}")
    obj = read_torch_file(path)
    if not is_official_layout(obj):
        kind = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{path}: not an official TDN checkpoint (no 'state_dict' mapping; found {kind!r})"
        )
    cfg = ModelConfig(
        arch=arch, num_classes=num_classes, num_segments=num_segments, variant="tdn", dropout=dropout
    )
    model = TDNNet(cfg)
    strict_load(model, convert_official_state_dict(obj["state_dict"], model, path), path)
    return model.eval()
