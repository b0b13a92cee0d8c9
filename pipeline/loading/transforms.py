"""Geometry of TDN's augmentations, decided before any pixel is decoded.

The loader decodes each JPEG straight into its crop (see ``pipeline/loading/jpeg_decode.py``), so the augmentations are
expressed here as crop *boxes* in the coordinates of the full-resolution stored frame, plus a flip flag,
chosen once per sample and applied identically to all T x 5 frames:

- train: ``multi_scale_crop_box`` follows the released code's ``GroupMultiScaleCrop(input_size,
  [1, .875, .75, .66])`` (max_distort=1, fix_crop=True, more_fix_crop=True): crop sides are scales of the
  shorter image side (snapped to the output size when within 2 px), width and height scale indices differ by
  at most one, and the offset is one of 13 fixed positions on a 4x4 grid. The crop is then resized to
  ``input_size`` (bilinear). ``flip_decision`` is ``GroupRandomHorizontalFlip`` (p = 0.5) or, for
  Something-Something, no flip or the flip that swaps direction-paired labels (``GroupRandomHorizontalFlip_sth``).
- eval: ``eval_boxes`` is ``GroupScale(short_side)`` + ``GroupCenterCrop(input_size)`` (one crop) or
  ``GroupScale(short_side)`` + ``GroupFullResSample(short_side)`` (three short_side x short_side crops along
  the longer side: left, right, centre, in the released order), mapped back onto the stored frame.

Normalisation (ImageNet mean/std) works on whole batches: ``normalise_uint8`` turns the loader's uint8
(N, T, 5, 3, S, S) tensor into float32 in one vectorised pass, on the CPU or on the training device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SCALES = (1.0, 0.875, 0.75, 0.66)


@dataclass(frozen=True)
class CropBox:
    """A region of the full-resolution stored frame, (left, top, right, bottom) in pixels (floats allowed:
    eval boxes mapped back through a resize need not be whole pixels)."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.left, self.top, self.right, self.bottom)

    def is_integral(self) -> bool:
        return all(float(v).is_integer() for v in self.as_tuple())


def crop_size_pairs(
    image_w: int, image_h: int, input_size: int, scales: Sequence[float]
) -> list[tuple[int, int]]:
    """Candidate (crop_w, crop_h) of the multi-scale crop, in the released code's order."""
    base = min(image_w, image_h)
    sizes = [int(base * s) for s in scales]
    # Sizes within 2 px of the output are snapped to it, so nearly-unscaled crops are exact copies.
    snapped = [input_size if abs(x - input_size) < 3 else x for x in sizes]
    return [(w, h) for i, h in enumerate(snapped) for j, w in enumerate(snapped) if abs(i - j) <= 1]


def fixed_offsets(image_w: int, image_h: int, crop_w: int, crop_h: int) -> list[tuple[int, int]]:
    """The 13 fixed crop positions (corners, centre, edge centres, quarter points) on a 4x4 grid."""
    ws, hs = (image_w - crop_w) // 4, (image_h - crop_h) // 4
    grid = [
        (0, 0),
        (4, 0),
        (0, 4),
        (4, 4),
        (2, 2),
        (0, 2),
        (4, 2),
        (2, 4),
        (2, 0),
        (1, 1),
        (3, 1),
        (1, 3),
        (3, 3),
    ]
    return [(i * ws, j * hs) for i, j in grid]


def multi_scale_crop_box(
    image_w: int, image_h: int, input_size: int, scales: Sequence[float], rng: np.random.Generator
) -> CropBox:
    """Random training crop box (integer pixels) of a ``image_w`` x ``image_h`` frame."""
    pairs = crop_size_pairs(image_w, image_h, input_size, scales)
    crop_w, crop_h = pairs[int(rng.integers(len(pairs)))]
    # A frame smaller than the output size in one dimension cannot hold the snapped crop: clamp it.
    crop_w, crop_h = min(crop_w, image_w), min(crop_h, image_h)
    offsets = fixed_offsets(image_w, image_h, crop_w, crop_h)
    x, y = offsets[int(rng.integers(len(offsets)))]
    return CropBox(x, y, x + crop_w, y + crop_h)


def flip_decision(
    label: int,
    mode: str,
    label_pairs: Sequence[Sequence[int]],
    rng: np.random.Generator,
) -> tuple[bool, int]:
    """(flip?, label after the flip) for one sample.

    ``mode``: "none" never flips; "random" flips with p = 0.5 (Kinetics-like data); "swap_labels" flips with
    p = 0.5 and maps a direction-paired class to its partner (SSv1: 86<->87, 93<->94, 166<->167)."""
    if mode == "none":
        return False, label
    if mode not in ("random", "swap_labels"):
        raise ValueError(f"flip must be 'none', 'random' or 'swap_labels', got {mode!r}")
    if rng.random() >= 0.5:
        return False, label
    if mode == "swap_labels":
        swap = label_swap_map(label_pairs)
        return True, swap.get(label, label)
    return True, label


def label_swap_map(label_pairs: Sequence[Sequence[int]]) -> dict[int, int]:
    """Both directions of each pair; a class listed twice is a configuration error."""
    out: dict[int, int] = {}
    for pair in label_pairs:
        if len(pair) != 2:
            raise ValueError(f"flip_label_pairs entries must be pairs of class indices, got {pair!r}")
        a, b = int(pair[0]), int(pair[1])
        if a in out or b in out or a == b:
            raise ValueError(f"flip_label_pairs: class {a} or {b} appears in more than one pair")
        out[a], out[b] = b, a
    return out


def resized_size(image_w: int, image_h: int, short_side: int) -> tuple[int, int]:
    """(w, h) after scaling the shorter side to ``short_side`` (torchvision Resize(int) rounding: floor)."""
    if image_w <= image_h:
        return short_side, int(short_side * image_h / image_w)
    return int(short_side * image_w / image_h), short_side


def eval_boxes(image_w: int, image_h: int, short_side: int, input_size: int, num_crops: int) -> list[CropBox]:
    """Eval crop boxes in stored-frame coordinates; each box is resized to the output side.

    num_crops == 1: centre ``input_size`` crop of the frame scaled to ``short_side`` (output input_size).
    num_crops == 3: ``short_side`` x ``short_side`` crops at the left/right/centre (top/bottom/centre for
    portrait frames) of the scaled frame (output short_side), crop index 0, 1, 2 in that order."""
    ow, oh = resized_size(image_w, image_h, short_side)
    sx, sy = image_w / ow, image_h / oh
    if num_crops == 1:
        if input_size > min(ow, oh):
            raise ValueError(f"centre crop {input_size} is larger than the eval short side {short_side}")
        left, top = int(round((ow - input_size) / 2.0)), int(round((oh - input_size) / 2.0))
        crops = [(left, top, input_size)]
    elif num_crops == 3:
        ws, hs = (ow - short_side) // 4, (oh - short_side) // 4
        if ow >= oh:
            crops = [(0, 2 * hs, short_side), (4 * ws, 2 * hs, short_side), (2 * ws, 2 * hs, short_side)]
        else:
            # The released GroupFullResSample only moves along x, giving three identical crops of portrait
            # videos; here the crops run along the longer side whatever the orientation.
            crops = [(2 * ws, 0, short_side), (2 * ws, 4 * hs, short_side), (2 * ws, 2 * hs, short_side)]
    else:
        raise ValueError(f"eval_crops must be 1 or 3, got {num_crops}")
    return [CropBox(x * sx, y * sy, (x + c) * sx, (y + c) * sy) for x, y, c in crops]


def eval_output_size(input_size: int, short_side: int, num_crops: int) -> int:
    return input_size if num_crops == 1 else short_side


def normalise_uint8(
    x: torch.Tensor,
    out: torch.Tensor | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """uint8 (..., 3, H, W) RGB in [0, 255] -> float32 (..., 3, H, W) normalised (ImageNet's mean/std unless
    a model's recipe says otherwise), contiguous.

    (x - 255*mean) * 1/(255*std) on whatever device ``x`` lives; call it on the GPU with the loader's uint8
    output to move 4x fewer bytes over PCIe. ``out``: a preallocated float32 result."""
    if x.dtype != torch.uint8:
        raise TypeError(f"expected a uint8 tensor, got {x.dtype}")
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"expected (..., 3, H, W), got {tuple(x.shape)}")
    if out is None:
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    # A plain uint8 -> float copy then per-channel scalar ops: each one pass over contiguous memory (a
    # broadcast mixed-dtype subtraction is many times slower on the CPU).
    out.copy_(x)
    for c in range(3):
        out.select(-3, c).sub_(255.0 * mean[c]).mul_(1.0 / (255.0 * std[c]))
    return out


def normalise_on_device(x: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """Move a uint8 batch to ``device`` (non-blocking when pinned) and normalise it there; float32 batches
    (already normalised by the loader) are only moved."""
    if device is not None:
        x = x.to(device, non_blocking=True)
    return normalise_uint8(x) if x.dtype == torch.uint8 else x


def denormalise(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``normalise_uint8`` (float, 0..255 scale): for tests and visual checks."""
    shape = (3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(shape)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(shape)
    return (x * std + mean) * 255.0
