"""ImageNet initialisation of a new model from a torchvision-layout ResNet state dict (a training step).

file: conv1.weight, bn1.*, layer1..4.*, fc.* (ignored)
  --> RGB stream conv1, bn1, layer1..4 (same names)
  --> S-TDM stem conv1: RGB conv1 averaged over RGB, repeated to its 12 (or 15) channels
  --> S-TDM layers: copies of layer1..
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from tdn.checkpoints.project import CheckpointError, read_torch_file
from tdn.model.networks import TDNNet


def load_imagenet_weights(model: TDNNet, source: str | Mapping[str, torch.Tensor]) -> None:
    """Initialise both streams from a torchvision-layout ResNet state dict (conv1.weight, layer1.0.conv1...).

    RGB stream: conv1, bn1, layer1..4 (fc.* in the file is ignored: the head is new). S-TDM stream: its stem
    conv takes the RGB conv1 weight averaged over RGB and repeated to its 12 (or 15) input channels, and its
    layers are copies of layer1..; its BN after the stem stays freshly initialised (as released). L-TDM and
    temporal conv modules keep their own initialisation.
    """
    where = source if isinstance(source, str) else "ImageNet state dict"
    file = read_torch_file(source) if isinstance(source, str) else source
    if isinstance(file, dict) and isinstance(file.get("state_dict"), Mapping):
        file = file["state_dict"]
    if not isinstance(file, Mapping):
        raise CheckpointError(f"{where}: expected a state dict, got {type(file).__name__}")
    ours = model.state_dict()
    target: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []

    def take(file_key: str, our_key: str) -> None:
        if file_key in file:
            target[our_key] = file[file_key]
            used.add(file_key)
        elif not our_key.endswith("num_batches_tracked"):
            missing.append(file_key)

    temporal = (".ltdm.", ".tconv.")
    for key in ours:
        if key.startswith(("conv1.", "bn1.", "layer")) and not any(t in key for t in temporal):
            take(key, key)
        elif key.startswith("stdm.layers."):
            index, rest = key[len("stdm.layers.") :].split(".", 1)
            take(f"layer{int(index) + 1}.{rest}", key)
    if model.stdm is not None:
        if "conv1.weight" not in file:
            missing.append("conv1.weight")
        else:
            w = file["conv1.weight"]
            in_ch = model.stdm.conv1.in_channels
            target["stdm.conv1.weight"] = w.mean(dim=1, keepdim=True).expand(-1, in_ch, -1, -1).contiguous()
    unexpected = sorted(k for k in file if k not in used and not k.startswith("fc.") and k != "conv1.weight")
    shapes = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(ours[k].shape)}"
        for k, v in target.items()
        if tuple(v.shape) != tuple(ours[k].shape)
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{where} is not a matching torchvision-layout ResNet: missing {sorted(set(missing))[:20]}, "
            f"unexpected {unexpected[:20]}, shape mismatches {shapes[:20]}"
        )
    with torch.no_grad():
        for k, v in target.items():
            ours[k].copy_(v)
