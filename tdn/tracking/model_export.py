"""A project checkpoint as an MLflow ``pytorch`` model in MLflow's pickle-free pt2 format (torch.export).

    checkpoint.pt --tdn.checkpoints.project.load_model_checkpoint--> TDNNet, eval mode
      --mlflow.pytorch.save_model(serialization_format="pt2")--> <dir>/data/model.pt2
                                              (torch.export.export + torch.export.save; the batch dim dynamic)
      --_drop_device_pins--> the same program without its device assertions (``.to("cuda")`` works)
    <dir>/MLmodel             flavors pytorch + python_function, signature (input unnamed, output "logits"),
                              metadata (description, class names, input shape, the model's recipe
                              (tdn/checkpoints/recipe.py), the input example's source and class),
                              saved_input_example_info (Model.load_input_example reads the example)
    <dir>/class_names.json    the classifier's classes, index order
    <dir>/input_example.json  the example clip as MLflow reads it (nested lists, 4 decimals)
    <dir>/input_example.npz   ``x``: the same float32 (1, T, 5, 3, S, S) array (np.load, no pickle)
    <dir>/requirements.txt, python_env.yaml, conda.yaml   (MLflow's, pinned to the running torch and mlflow, local
                              version labels removed: torch==2.13.0, never 2.13.0+cpu)

Input: float32 (N, T, 5, 3, S, S), T = the model's segments, 5 consecutive frames per segment, RGB, S x S
crops normalised with the ImageNet mean/std as the project's loaders do (pipeline/loading/transforms.py);
S = the training crop (``loader.input_size`` of the checkpoint's training config, else 224). Output: (N,
classes) logits, averaged over the segments. Loading it back needs neither this project nor pickle::

    model = mlflow.pytorch.load_model("models:/tdn-ucf101@champion")   # a torch.fx GraphModule, eval mode
    model.to("cuda"); logits = model(x.cuda())                          # x: torch.float32 (N, T, 5, 3, S, S)
    logits = mlflow.pyfunc.load_model("models:/tdn-ucf101@champion").predict(x.numpy())   # numpy in and out

``model.eval()`` / ``model.train()`` raise NotImplementedError on what ``mlflow.pytorch.load_model`` returns:
``torch.export.ExportedProgram.module()`` (torch 2.13, torch/export/exported_program.py) replaces both methods
with ones that raise, and MLflow's pt2 loader returns that module (mlflow/pytorch/__init__.py, _load_model).
No pickle-free format of MLflow 3.17 gives an nn.Module whose eval() works (its "pickle" format, a TorchScript
or pickled module, is refused unless MLFLOW_ALLOW_PICKLE_DESERIALIZATION is set). The exported graph is already
the eval-mode model (BatchNorm running statistics, no dropout), so eval() is not needed: the description says so.

TDN exports as it is: torch.export traces through the custom autograd functions' forward (their hand-written
backward is not needed for inference) and the slice assignments of the temporal modules; the exported program
gives the eager model's logits exactly (max |diff| 0.0 measured on the tiny test model, N = 1, 2 and 3).

MLflow's own choices worked around here: a numpy ``input_example`` of one clip would make torch.export
specialise the batch dim to 1 (Dim.AUTO), and MLflow would write it as JSON twice (input and serving example,
the latter indented) at full float precision, 117 MB per file for one TDN-R50 8f 224 clip; so the export gets a
2-clip tensor and the example is written here, once, rounded to 4 decimals (44 MB there; a grey level is 0.017
after normalisation, so the rounding changes no pixel). For a tensor example MLflow adds no python_function
flavor, so it is added here (mlflow.pytorch's pyfunc loader reads the pt2 file the same way), pinned to
``device: cpu`` (MLflow refuses to load weights exported on one device onto another). The signature's input
stays unnamed: with a name, pyfunc's schema enforcement hands mlflow.pytorch's predict a dict, which it
rejects (TypeError, MLflow 3.17); the output is named "logits" and the layout is in the description.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_INPUT_SIZE = 224  # the crop when the checkpoint carries no training config (the paper's 224)
EXPORT_BATCH = 2  # torch.export specialises a size-1 dim to a constant: 2 keeps the batch dim dynamic
CLASS_NAMES_FILE = "class_names.json"
EXAMPLE_FILE = "input_example.npz"
EXAMPLE_JSON = "input_example.json"  # MLflow's name (mlflow.models.utils.EXAMPLE_FILENAME)
EXAMPLE_DECIMALS = 4  # input_example.json / .npz precision (module docstring: 44 MB instead of 117 MB)
DESCRIBED_CLASSES = 30  # the description lists this many class names, then points to class_names.json
SYNTHETIC_SOURCE = "synthetic: moving colour stripes (no clip was given; deterministic, not real data)"


@dataclass(frozen=True)
class InputExample:
    """A real input for the logged model: clips float32 (N >= 1, T, 5, 3, S, S), normalised as the loaders do
    (the training job passes one clip of its data), and where it came from (shown in the MLmodel metadata)."""

    clips: np.ndarray
    source: str  # e.g. "ucf101/train shard-000003.tar, video v_ApplyEyeMakeup_g08_c01 (ApplyEyeMakeup)"

    def save(self, path: str) -> None:
        """An .npz (``clips``, ``source``) a queued registration can carry by path; no pickle."""
        np.savez_compressed(
            path, clips=np.asarray(self.clips, dtype=np.float32), source=np.array(self.source)
        )

    @staticmethod
    def load(path: str) -> InputExample:
        with np.load(path, allow_pickle=False) as f:
            return InputExample(np.asarray(f["clips"], dtype=np.float32), str(f["source"]))


@dataclass(frozen=True)
class ExportedModel:
    """What ``save_exported_model`` wrote."""

    input_shape: tuple[int, ...]  # the example's shape, (N, T, 5, 3, S, S); N is dynamic in the model
    num_classes: int  # the logits' width
    class_names: list[str]  # index order ("" entries: the checkpoint named none)
    export_s: float  # seconds spent in save_model (torch.export and the write)
    example_source: str  # InputExample.source, or SYNTHETIC_SOURCE
    example_class: int  # the class the eager model predicts for the example's first clip
    description: str  # markdown: layout, normalisation, classes, how to load and call it


def input_size_of(ckpt: Mapping[str, Any]) -> int:
    """The training crop S of a project checkpoint (``train_config.loader.input_size``), else 224."""
    train_config = ckpt.get("train_config")
    loader = train_config.get("loader") if isinstance(train_config, Mapping) else None
    size = loader.get("input_size") if isinstance(loader, Mapping) else None
    return size if isinstance(size, int) and size > 0 else DEFAULT_INPUT_SIZE


def synthetic_clip(t: int, size: int) -> np.ndarray:
    """float32 (1, t, 5, 3, size, size): diagonal stripes moving 2 px per frame, each colour channel at its
    own phase, quantised to 8-bit levels and ImageNet-normalised like a decoded frame. Deterministic; the
    fallback example when no real clip is given (all zeros, the mean colour, told a reviewer nothing)."""
    from pipeline.loading.transforms import IMAGENET_MEAN, IMAGENET_STD

    frame = np.arange(t * 5, dtype=np.float64).reshape(t, 5, 1, 1, 1)
    channel = np.arange(3, dtype=np.float64).reshape(1, 1, 3, 1, 1)
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    phase = 2.0 * np.pi * ((xx + yy)[None, None, None] + 2.0 * frame) / max(size / 2.0, 1.0)
    pixels = np.round(255.0 * (0.5 + 0.4 * np.sin(phase + 2.0 * channel))) / 255.0
    mean = np.asarray(IMAGENET_MEAN).reshape(1, 1, 3, 1, 1)
    std = np.asarray(IMAGENET_STD).reshape(1, 1, 3, 1, 1)
    return ((pixels - mean) / std)[None].astype(np.float32)


def installable_requirements(requirements: Sequence[str]) -> list[str]:
    """Pins without local version labels: ``torch==2.13.0+cpu`` -> ``torch==2.13.0`` (a CUDA host cannot
    install a ``+cpu`` build; the public version resolves to the host's own wheel)."""
    return [re.sub(r"^(\s*[A-Za-z0-9_.\-\[\],]+\s*===?\s*[^\s;+]+)\+[^\s;]+", r"\1", r) for r in requirements]


def save_exported_model(
    checkpoint_path: str, path: str, example: InputExample | None = None
) -> ExportedModel:
    """Write the MLflow pt2 model of the project checkpoint at ``checkpoint_path`` into the new folder ``path``;
    ``example``: the input example to store (a real clip), else ``synthetic_clip`` (the metadata says which).

    Why a registration takes seconds, one measurement each on this project's 2-core CPU machine (shared
    with other jobs, so CPU time is the figure that carries over): torch.export of the tests' tiny model
    (ResNet-18 width 0.25, T=4, 56 px) 8.7 s of CPU (6.5 s with a static batch dim), about 10 s for the whole
    save; TDN-R50 8f at 224 14.5 s of CPU, logits identical to the eager model's (max |diff| 0.0). The time
    follows the number of ops in the graph, not S or the weights' size. Size: torch.export also stores the
    export input in the pt2 file, 2 clips = 48 MB at R50 8f 224 beside its 103 MB of weights (1.5 MB tiny).
    """
    import mlflow.pytorch
    import torch
    from mlflow.models import Model, ModelSignature
    from mlflow.pyfunc import add_to_model
    from mlflow.types import Schema, TensorSpec

    from tdn.checkpoints.project import load_model_checkpoint
    from tdn.checkpoints.recipe import recipe_of

    model, ckpt = load_model_checkpoint(checkpoint_path)
    model.eval()
    t, size, num_classes = model.num_segments, input_size_of(ckpt), int(model.fc.out_features)
    names = [str(n) for n in ckpt.get("class_names") or []]
    clips = _example_clips(example, (t, 5, 3, size, size))
    source = example.source if example is not None else SYNTHETIC_SOURCE
    with torch.no_grad():
        predicted = int(model(torch.from_numpy(clips[:1])).argmax(dim=1)[0])
    description = model_description(ckpt, (t, size, num_classes), names, source, predicted)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, t, 5, 3, size, size))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes), name="logits")]),
    )
    metadata = {
        "description": description,
        "class_names": names,
        "input_shape": ["N", t, 5, 3, size, size],
        "input": "float32 (N, T segments, 5 frames, RGB, S, S), ImageNet mean/std normalised",
        "output": "logits: float32 (N, classes), averaged over the segments",
        "recipe": recipe_of(ckpt, checkpoint_path).to_dict(),  # segments, protocol, sizes, mean/std, classes
        "input_example": {
            "files": [EXAMPLE_JSON, EXAMPLE_FILE],
            "shape": list(clips.shape),
            "source": source,
            "synthetic": example is None,
            "predicted_class": predicted,
            "predicted_name": names[predicted] if predicted < len(names) else "",
        },
    }
    start = time.perf_counter()
    mlflow.pytorch.save_model(
        model,
        path,
        serialization_format="pt2",
        input_example=torch.from_numpy(np.repeat(clips[:1], EXPORT_BATCH, axis=0)),  # traced, not stored
        signature=signature,
        metadata=metadata,
        # given, so MLflow does not infer them by loading the model again in a subprocess; torch alone (MLflow
        # adds its own pin): its default list adds cloudpickle, which the pt2 format never uses
        pip_requirements=installable_requirements([f"torch=={torch.__version__}"]),
    )
    _drop_device_pins(os.path.join(path, "data", "model.pt2"))
    export_s = time.perf_counter() - start
    with open(os.path.join(path, CLASS_NAMES_FILE), "w", encoding="utf-8") as f:
        json.dump(names, f, indent=1)
    np.savez_compressed(os.path.join(path, EXAMPLE_FILE), x=clips)
    with open(os.path.join(path, EXAMPLE_JSON), "w", encoding="utf-8") as f:
        json.dump(np.round(clips.astype(np.float64), EXAMPLE_DECIMALS).tolist(), f, separators=(",", ":"))
    mlmodel_path = os.path.join(path, "MLmodel")
    mlmodel = Model.load(mlmodel_path)
    add_to_model(
        mlmodel,
        loader_module="mlflow.pytorch",
        data="data",
        conda_env="conda.yaml",
        python_env="python_env.yaml",
        model_config={"device": "cpu"},
    )
    # what mlflow.models.utils._save_example records for an ndarray; no serving_input_path: a second copy of
    # the example (module docstring) would only serve Model.get_serving_input
    mlmodel.saved_input_example_info = {"artifact_path": EXAMPLE_JSON, "type": "ndarray"}
    mlmodel.model_size_bytes = _folder_bytes(path)
    mlmodel.save(mlmodel_path)
    return ExportedModel(clips.shape, num_classes, names, export_s, source, predicted, description)


def _example_clips(example: InputExample | None, clip_shape: tuple[int, ...]) -> np.ndarray:
    """The example as float32 (N, *clip_shape), rounded to EXAMPLE_DECIMALS so that input_example.json holds
    the exact values; ValueError naming both shapes when a given clip does not fit the model."""
    clips = synthetic_clip(clip_shape[0], clip_shape[-1]) if example is None else np.asarray(example.clips)
    if clips.ndim != len(clip_shape) + 1 or tuple(clips.shape[1:]) != clip_shape or clips.shape[0] < 1:
        raise ValueError(
            f"input example of shape {tuple(clips.shape)}: the model takes (N, {', '.join(map(str, clip_shape))})"
        )
    if not np.isfinite(clips).all():
        raise ValueError("input example holds NaN or infinite values")
    return np.round(clips.astype(np.float64), EXAMPLE_DECIMALS).astype(np.float32)


def _drop_device_pins(pt2_path: str) -> None:
    """Remove the program's ``aten._assert_tensor_metadata`` nodes and save it again.

    torch.export turns each ``tensor.to(x.dtype)`` of the model (TemporalConv's weight, 6 in TDN-R18) into
    an assertion that the tensor is a float32 *CPU* tensor; after ``model.to("cuda")`` the first one raises
    "Tensor device mismatch! Expected: cpu". They compute nothing (no users): torch's own
    _RemoveRuntimeAssertionsPass erases them the same way. Loading and saving the program again costs 6.5 s
    of CPU on the tests' tiny model (as much as the export), so the archive's graph (JSON) is searched first
    and a program without such nodes is left alone: TemporalConv casting only when the dtypes differ would
    make this free."""
    import zipfile

    import torch

    with zipfile.ZipFile(pt2_path) as archive:
        graphs = [n for n in archive.namelist() if "/models/" in n and n.endswith(".json")]
        if not any(b"_assert_tensor_metadata" in archive.read(n) for n in graphs):
            return
    program = torch.export.load(pt2_path)  # the file save_model has just written
    graph = program.graph_module.graph
    pins = [
        n
        for n in graph.nodes
        if n.op == "call_function"
        and n.target is torch.ops.aten._assert_tensor_metadata.default
        and not n.users
    ]
    if not pins:
        return
    for node in pins:
        graph.erase_node(node)
    program.graph_module.recompile()
    torch.export.save(program, pt2_path)


def model_description(
    ckpt: Mapping[str, Any], shape: tuple[int, int, int], names: Sequence[str], source: str, predicted: int
) -> str:
    """Markdown for the MLmodel metadata and the logged model's page: what the model is, its input layout and
    normalisation, its classes, how to load and call it, and what the input example is."""
    from pipeline.loading.transforms import IMAGENET_MEAN, IMAGENET_STD

    t, size, num_classes = shape
    cfg = ckpt.get("model_config") or {}
    arch, variant = cfg.get("arch", "?"), cfg.get("variant", "?")
    listed = ", ".join(f"{i} {n}" for i, n in enumerate(names[:DESCRIBED_CLASSES]))
    more = f", ... ({len(names)} in `{CLASS_NAMES_FILE}`)" if len(names) > DESCRIBED_CLASSES else ""
    predicted_name = names[predicted] if predicted < len(names) else str(predicted)
    return "\n".join(
        [
            f"TDN action recognition model ({arch}, variant `{variant}`, {t} segments, {size} px crops), "
            f"{num_classes} classes.",
            "",
            f"**Input** float32 `(N, {t}, 5, 3, {size}, {size})`: N clips x T={t} segments x 5 consecutive "
            f"frames x RGB x H x W ({size} x {size} crop); pixel values in [0, 1] normalised per channel with "
            f"the ImageNet mean {IMAGENET_MEAN} and std {IMAGENET_STD}.",
            f"**Output** `logits`: float32 `(N, {num_classes})`, averaged over the segments "
            "(softmax for probabilities).",
            f"**Classes** (index order): {listed}{more}"
            if names
            else "**Classes**: unnamed (class indices).",
            "",
            "**Load** (no project code, no pickle):",
            "`model = mlflow.pytorch.load_model(uri)` gives a torch.export module already in inference mode "
            "(BatchNorm running statistics, no dropout); `model.to('cuda')` works, `model.eval()` raises "
            "NotImplementedError (PyTorch's exported modules): skip it. `logits = model(x)`.",
            "`mlflow.pyfunc.load_model(uri).predict(x_numpy)`: numpy in and out, on the CPU.",
            "",
            f"**Input example** (`{EXAMPLE_JSON}`, `{EXAMPLE_FILE}`, `Model.load_input_example`): {source}; "
            f"the model predicts class {predicted} ({predicted_name}).",
        ]
    )


def _folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
