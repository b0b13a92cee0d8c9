"""Our model vs the released TDN code itself, on the same official-layout checkpoint and input.

    python -m benchmarks.compare_official --official /tmp/official_tdn [--size 224]

``--official`` is a folder holding a copy of github MCG-NJU/TDN's ``ops/`` (never commit it here). The
released code imports torchvision for its data transforms only: an empty stub module stands in for it in
``sys.modules`` of this process. Its builder downloads ImageNet weights; that call is replaced by an empty
state dict (the random checkpoint below overwrites every weight anyway, loaded with strict=True).

Prints the max relative error of the logits (eval mode) for R50 8f, R50 16f and R101 8f, and, in float64, of
the train-mode logits, the input gradient, two weight gradients and the BN running statistics after a step.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmarks.model_step import official_model
from tdn.checkpoints.official import convert_official_state_dict, load_official_checkpoint
from tdn.checkpoints.official_random import random_official_state_dict


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", required=True)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    depths = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
    for arch, t in (("resnet50", 8), ("resnet50", 16), ("resnet101", 8)):
        sd = random_official_state_dict(num_classes=17, depths=depths[arch], seed=t)
        theirs = official_model(args.official, arch, t, 17)
        theirs.load_state_dict({k[len("module.") :]: v for k, v in sd.items()}, strict=True)
        torch.save({"state_dict": sd, "arch": arch, "epoch": 1}, tmp / "ckpt.pth.tar")
        ours = load_official_checkpoint(str(tmp / "ckpt.pth.tar"), arch, t, 17)
        x = torch.randn(2, t, 5, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
        theirs.eval()  # the released TSN.train() override returns None: do not chain it
        with torch.no_grad():
            a, b = theirs(x.view(2, t * 15, args.size, args.size)), ours(x)
        print(
            f"eval  {arch} T={t} {args.size}^2: max rel err of logits {_rel(a, b):.2e}, "
            f"same argmax: {bool((a.argmax(1) == b.argmax(1)).all())}"
        )

    # training mode, float64 (float32 rounding through 50 random layers would hide real differences)
    sd = random_official_state_dict(num_classes=17, seed=3)
    theirs = official_model(args.official, "resnet50", 8, 17)
    theirs.load_state_dict({k[len("module.") :]: v for k, v in sd.items()}, strict=True)
    torch.save({"state_dict": sd}, tmp / "ckpt.pth.tar")
    ours = load_official_checkpoint(str(tmp / "ckpt.pth.tar"), "resnet50", 8, 17)
    for m in (theirs, ours):
        m.double()
        m.train()
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.eval()
    size = min(args.size, 112)
    x = torch.randn(2, 8, 5, 3, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = theirs(xa.view(2, 8 * 15, size, size)), ours(xb)
    a.square().sum().backward()
    b.square().sum().backward()
    print(
        f"train R50 T=8 {size}^2 float64: logits {_rel(a.detach(), b.detach()):.2e}, "
        f"input grad {_rel(xa.grad, xb.grad):.2e}, "
        f"L-TDM expand grad {_rel(theirs.base_model.layer3_bak[2].mse.conv3.weight.grad, ours.layer3[2].ltdm.expand.weight.grad):.2e}, "
        f"temporal conv grad {_rel(theirs.base_model.layer2_bak[0].shift.conv.weight.grad, ours.layer2[0].tconv.weight.grad):.2e}"
    )
    after = convert_official_state_dict({"module." + k: v for k, v in theirs.state_dict().items()}, ours)
    worst = max(
        float((after[k].double() - v.double()).abs().max())
        for k, v in ours.state_dict().items()
        if "running" in k
    )
    print(f"train: max abs difference of BN running statistics after the step: {worst:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
