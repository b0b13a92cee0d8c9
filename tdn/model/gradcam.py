"""Grad-CAM (Selvaraju et al., the paper's Figures 4-7) for TDN and every baseline variant: where, in each of
a clip's T segments, the evidence for one class lies.

    x (1, T, 5, 3, S, S) normalised, class c, a stage L (pick_layer: layer4 unless its map is too coarse)
      forward, L's output kept               A (T, K, h, w)   one map per segment
      d logit_c / d A                        G (T, K, h, w)   (logit_c: the clip's logit, mean over segments)
      weights = mean of G over (h, w)        alpha (T, K)
      cam = ReLU(sum_k alpha_k A_k)          (T, h, w)
      bilinear up to the crop                (T, S, S)        h = S / stride (layer1..4: 4, 8, 16, 32)
      / its maximum over the whole clip      [0, 1]           (0 everywhere when nothing is positive)

Which stage: the last one, layer4, is Grad-CAM's choice and the paper's (7 x 7 at 224 px). A map of 2 or 3
cells says little about where: a tiny TDN trained on one small moving object (tests/test_gradcam.py) put
1.45x the box's share of its layer4 CAM mass inside the object's box at 96 px (3 x 3 cells), but 4.6x with
layer2 (12 x 12), 3.6x with layer3 (6 x 6); a random model 0.8-1.1x with any. ``pick_layer`` takes the
deepest stage whose map has at least MIN_SIDE cells a side: layer4 from 224 px, layer3 at 112, layer2 at 56.

Every variant (tsn, tconv, stdm, ltdm, tdn) has the same four RGB stages and consumes the same input, so one
function serves all; the temporal modules' hand-written backward passes carry the gradient through time.
The model stays in eval mode (BatchNorm running statistics, no dropout); no weight is changed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tdn.model.networks import TDNNet

LAYERS = ("layer1", "layer2", "layer3", "layer4")  # the RGB stream's stages, strides 4, 8, 16, 32
STRIDES = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
MIN_SIDE = 7  # cells a side of the map pick_layer asks for: layer4 at 224 px, as Grad-CAM is usually shown
LAYER = "layer4"


def pick_layer(size: int) -> str:
    """The deepest stage whose map of an ``size`` px crop has at least MIN_SIDE cells a side (layer1 if none)."""
    for layer in reversed(LAYERS):
        if -(-size // STRIDES[layer]) >= MIN_SIDE:
            return layer
    return LAYERS[0]


def grad_cam(model: TDNNet, x: torch.Tensor, class_index: int, layer: str = LAYER) -> np.ndarray:
    """float32 (T, S, S) in [0, 1] for one clip ``x`` (1, T, 5, 3, S, S) and ``class_index``, from the
    activations and gradients of ``layer`` (one of LAYERS: the RGB stream's stages, stride 4 to 32)."""
    if x.dim() != 6 or x.shape[0] != 1:
        raise ValueError(f"grad_cam takes one clip (1, T, 5, 3, S, S), got {tuple(x.shape)}")
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {', '.join(LAYERS)}, got {layer!r}")
    kept: list[torch.Tensor] = []
    handle = getattr(model, layer).register_forward_hook(lambda _m, _i, out: kept.append(out))
    try:
        with torch.enable_grad():
            logits = model(x)
            if not 0 <= class_index < logits.shape[1]:
                raise ValueError(f"class {class_index} outside 0..{logits.shape[1] - 1}")
            (grads,) = torch.autograd.grad(logits[0, class_index], kept[-1])
    finally:
        handle.remove()
    acts = kept[-1].detach()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * acts).sum(dim=1, keepdim=True))  # (T, 1, h, w)
    size = x.shape[-1]
    cam = F.interpolate(cam.float(), size=(x.shape[-2], size), mode="bilinear", align_corners=False)[:, 0]
    peak = float(cam.max())
    out = cam / peak if peak > 0 else torch.zeros_like(cam)
    return out.clamp_(0.0, 1.0).cpu().numpy().astype(np.float32)


def mass_inside(cam: np.ndarray, masks: np.ndarray) -> float:
    """Share of the CAM's total mass that falls inside ``masks`` (both (T, H, W)); 0 when the CAM is empty."""
    total = float(cam.sum())
    return float(cam[masks].sum()) / total if total > 0 else 0.0
