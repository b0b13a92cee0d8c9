"""Model weights in and out: project checkpoints, official TDN checkpoints, ImageNet initialisation.

Project format (a dict, loadable with ``torch.load(weights_only=True)``; local paths or s3:// URIs):
    {"format": "tdn-checkpoint/1", "model_config": dict, "model": state_dict, "class_names": [...],
     "optimizer", "scheduler", "epoch", "step", "rng", "train_config", "metrics"}   (last ones optional)

Every load is strict: a file that does not fit the model raises ``CheckpointError`` listing the missing keys,
the unexpected keys and the shape mismatches; nothing is loaded partially.

CLI: ``python -m tdn.checkpoints.project convert-official IN OUT --arch resnet50 --segments 8 --num-classes 400``
"""

from __future__ import annotations

import argparse
import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from pipeline import storage
from pipeline.config import config_from_dict, config_to_dict
from tdn.model.networks import ModelConfig, TDNNet, build_model_from_config
from tdn.model.resnet import Arch

FORMAT = "tdn-checkpoint/1"


class CheckpointError(ValueError):
    """A weights file that does not match what it is loaded into."""


def _numpy_globals() -> list[Any]:
    """numpy scalar/array types, which released checkpoints may carry in metadata (e.g. best_prec1)."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    return [core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.float64))]


def _torch_load_bytes(data: bytes, where: str) -> Any:
    try:
        # still weights_only=True: only plain numpy scalars/arrays are added to what may be unpickled
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure becomes one clear error
        raise CheckpointError(f"{where}: not a loadable torch file with weights_only=True ({exc})") from exc


def _read(uri: str) -> Any:
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{uri}: no such file") from exc
    return _torch_load_bytes(data, uri)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Raise CheckpointError unless ``state`` has exactly the model's keys with the model's shapes."""
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:20])}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {'; '.join(shapes[:20])}")
        raise CheckpointError(f"{where} does not match the model: " + " | ".join(parts))


def strict_load(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    check_state_dict(model, state, where)
    model.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------------------------- project


def save_checkpoint(
    uri: str,
    model: nn.Module,
    model_config: ModelConfig,
    class_names: Sequence[str] | None = None,
    *,
    optimizer: Any = None,
    scheduler: Any = None,
    epoch: int = 0,
    step: int = 0,
    rng: Mapping[str, Any] | None = None,
    train_config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
) -> None:
    """Write a project checkpoint atomically (temp + rename locally, one PUT on S3).

    ``optimizer``/``scheduler`` may be objects with ``state_dict()`` or plain state dicts.
    """
    cfg = config_to_dict(model_config)
    cfg["pretrained"] = None  # the weights are in the file; never re-read the ImageNet init on load
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "model_config": cfg,
        "model": {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()},
        "class_names": list(class_names) if class_names is not None else [],
        "epoch": int(epoch),
        "step": int(step),
    }
    for name, value in (("optimizer", optimizer), ("scheduler", scheduler)):
        if value is not None:
            ckpt[name] = value.state_dict() if hasattr(value, "state_dict") else value
    if rng is not None:
        ckpt["rng"] = dict(rng)
    if train_config is not None:
        ckpt["train_config"] = dict(train_config)
    if metrics is not None:
        ckpt["metrics"] = {k: float(v) for k, v in metrics.items()}
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    storage.write_bytes_atomic(uri, buf.getvalue())


def load_checkpoint(uri: str) -> dict[str, Any]:
    """Read and validate a project checkpoint dict (no model built)."""
    ckpt = _read(uri)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        hint = " (an official TDN checkpoint? use load_official_checkpoint)" if _is_official(ckpt) else ""
        raise CheckpointError(f"{uri}: not a {FORMAT} checkpoint (format: {found!r}){hint}")
    for key in ("model_config", "model"):
        if key not in ckpt:
            raise CheckpointError(f"{uri}: checkpoint lacks {key!r}")
    return ckpt


def load_model_checkpoint(uri: str) -> tuple[TDNNet, dict[str, Any]]:
    """Build the model a project checkpoint describes, load its weights strictly; returns (model, ckpt)."""
    ckpt = load_checkpoint(uri)
    cfg = config_from_dict(ModelConfig, {**ckpt["model_config"], "pretrained": None})
    model = build_model_from_config(cfg)
    strict_load(model, ckpt["model"], uri)
    return model, ckpt


# ---------------------------------------------------------------------------------------------- official

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


def _is_official(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("state_dict"), Mapping)


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
        raise CheckpointError(f"{where}: keys with no place in the model: {', '.join(sorted(unexpected)[:20])}")
    check_state_dict(model, out, where)
    return out


def load_official_checkpoint(
    path: str, arch: Arch, num_segments: int, num_classes: int, dropout: float = 0.5
) -> TDNNet:
    """Load a checkpoint saved by the released TDN ``main.py``; returns our model in eval mode."""
    if arch not in ("resnet50", "resnet101"):
        raise CheckpointError(f"the released TDN code builds resnet50/resnet101 only, got {arch!r}")
    obj = _read(path)
    if not _is_official(obj):
        kind = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: not an official TDN checkpoint (no 'state_dict' mapping; found {kind!r})")
    cfg = ModelConfig(arch=arch, num_classes=num_classes, num_segments=num_segments, variant="tdn", dropout=dropout)
    model = TDNNet(cfg)
    strict_load(model, convert_official_state_dict(obj["state_dict"], model, path), path)
    return model.eval()


# ---------------------------------------------------------------------------------------------- ImageNet


def load_imagenet_weights(model: TDNNet, source: str | Mapping[str, torch.Tensor]) -> None:
    """Initialise both streams from a torchvision-layout ResNet state dict (conv1.weight, layer1.0.conv1...).

    RGB stream: conv1, bn1, layer1..4 (fc.* in the file is ignored: the head is new). S-TDM stream: its stem
    conv takes the RGB conv1 weight averaged over RGB and repeated to its 12 (or 15) input channels, and its
    layers are copies of layer1..; its BN after the stem stays freshly initialised (as released). L-TDM and
    temporal conv modules keep their own initialisation.
    """
    where = source if isinstance(source, str) else "ImageNet state dict"
    file = _read(source) if isinstance(source, str) else source
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


# ---------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tdn.checkpoints.project", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert-official", help="convert a released TDN checkpoint to the project format")
    conv.add_argument("input", help="official checkpoint (.pth / .pth.tar), local path or s3:// URI")
    conv.add_argument("output", help="project checkpoint to write, local path or s3:// URI")
    conv.add_argument("--arch", choices=["resnet50", "resnet101"], required=True)
    conv.add_argument("--segments", type=int, required=True)
    conv.add_argument("--num-classes", type=int, required=True)
    conv.add_argument("--dropout", type=float, default=0.5)
    conv.add_argument("--class-names", help="text file, one class name per line (optional)")
    args = parser.parse_args(argv)
    try:
        model = load_official_checkpoint(args.input, args.arch, args.segments, args.num_classes, args.dropout)
        names: list[str] = []
        if args.class_names:
            names = [line.strip() for line in storage.read_text(args.class_names).splitlines() if line.strip()]
            if len(names) != args.num_classes:
                raise CheckpointError(f"{args.class_names}: {len(names)} names for {args.num_classes} classes")
        save_checkpoint(args.output, model, model.config, names)
    except CheckpointError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"wrote {args.output} ({args.arch}, {args.segments} segments, {args.num_classes} classes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
