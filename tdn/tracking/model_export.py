"""A project checkpoint as an MLflow ``pytorch`` model in MLflow's pickle-free pt2 format (torch.export).

    checkpoint.pt --tdn.checkpoints.project.load_model_checkpoint--> TDNNet, eval mode
      --mlflow.pytorch.save_model(serialization_format="pt2")--> <dir>/data/model.pt2
                                              (torch.export.export + torch.export.save; the batch dim dynamic)
    <dir>/MLmodel           flavors pytorch + python_function, signature, metadata (class names, input shape)
    <dir>/class_names.json  the classifier's classes, index order
    <dir>/input_example.npz ``x``: a float32 (2, T, 5, 3, S, S) example input (np.load, no pickle)
    <dir>/requirements.txt, python_env.yaml, conda.yaml   (MLflow's, pinned to the running torch and mlflow)

Input: float32 (N, T, 5, 3, S, S), T = the model's segments, 5 consecutive frames per segment, RGB, S x S
crops normalised with the ImageNet mean/std as the project's loaders do (pipeline/loading/transforms.py);
S = the training crop (``loader.input_size`` of the checkpoint's training config, else 224). Output: (N,
classes) logits, averaged over the segments. Loading it back needs neither this project nor pickle::

    model = mlflow.pytorch.load_model("models:/tdn-ucf101@champion")   # a torch.fx GraphModule
    logits = model(x)                                                   # x: torch.float32 (N, T, 5, 3, S, S)
    logits = mlflow.pyfunc.load_model("models:/tdn-ucf101@champion").predict(x.numpy())   # numpy in and out

TDN exports as it is: torch.export traces through the custom autograd functions' forward (their hand-written
backward is not needed for inference) and the slice assignments of the temporal modules; the exported program
gives the eager model's logits exactly (max |diff| 0.0 measured on the tiny test model, N = 1, 2 and 3).

MLflow's own choices worked around here: it keeps no JSON example for a tensor ``input_example`` (as JSON a
TDN-R50 8f 224 example of two clips would be 12 M numbers), so the example is the .npz above; for a tensor
example it adds no python_function flavor, so it is added here (mlflow.pytorch's pyfunc loader reads the
pt2 file the same way). The exported weights cannot move between devices, so the pyfunc flavor pins
``device: cpu`` (MLflow would otherwise pick CUDA when present and refuse the CPU weights).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_INPUT_SIZE = 224  # the crop when the checkpoint carries no training config (the paper's 224)
EXAMPLE_BATCH = 2  # torch.export specialises a size-1 dim to a constant: 2 keeps the batch dim dynamic
CLASS_NAMES_FILE = "class_names.json"
EXAMPLE_FILE = "input_example.npz"


@dataclass(frozen=True)
class ExportedModel:
    """What ``save_exported_model`` wrote."""

    input_shape: tuple[int, ...]  # the example's shape, (EXAMPLE_BATCH, T, 5, 3, S, S); N is dynamic
    num_classes: int  # the logits' width
    class_names: list[str]  # index order ("" entries: the checkpoint named none)
    export_s: float  # seconds spent in save_model (torch.export and the write)


def input_size_of(ckpt: Mapping[str, Any]) -> int:
    """The training crop S of a project checkpoint (``train_config.loader.input_size``), else 224."""
    train_config = ckpt.get("train_config")
    loader = train_config.get("loader") if isinstance(train_config, Mapping) else None
    size = loader.get("input_size") if isinstance(loader, Mapping) else None
    return size if isinstance(size, int) and size > 0 else DEFAULT_INPUT_SIZE


def save_exported_model(checkpoint_path: str, path: str) -> ExportedModel:
    """Write the MLflow pt2 model of the project checkpoint at ``checkpoint_path`` into the new folder ``path``.

    Why a registration now takes seconds, one measurement each on this project's 2-core CPU machine (shared
    with other jobs, so CPU time is the figure that carries over): torch.export of the tests' tiny model
    (ResNet-18 width 0.25, T=4, 56 px) 8.7 s of CPU (6.5 s with a static batch dim), about 10 s for the whole
    save; TDN-R50 8f at 224 14.5 s of CPU, logits identical to the eager model's (max |diff| 0.0). The time
    follows the number of ops in the graph, not S or the weights' size. Size: torch.export also stores the
    example input in the pt2 file, 2 clips = 48 MB at R50 8f 224 beside its 103 MB of weights (1.5 MB tiny).
    """
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import Model, ModelSignature
    from mlflow.pyfunc import add_to_model
    from mlflow.types import Schema, TensorSpec

    from tdn.checkpoints.project import load_model_checkpoint

    model, ckpt = load_model_checkpoint(checkpoint_path)
    model.eval()
    t, size, num_classes = model.num_segments, input_size_of(ckpt), int(model.fc.out_features)
    names = [str(n) for n in ckpt.get("class_names") or []]
    shape = (EXAMPLE_BATCH, t, 5, 3, size, size)
    example = torch.zeros(shape)  # zeros = a clip of the ImageNet mean colour after normalisation
    # unnamed specs: with a name, pyfunc's schema enforcement hands the model a dict instead of the array
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, t, 5, 3, size, size))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes))]),
    )
    metadata = {
        "class_names": names,
        "input_shape": ["N", t, 5, 3, size, size],
        "input": "float32 (N, T segments, 5 frames, RGB, S, S), ImageNet mean/std normalised",
        "output": "float32 (N, classes) logits, averaged over the segments",
        "input_example": EXAMPLE_FILE,
    }
    start = time.perf_counter()
    mlflow.pytorch.save_model(
        model,
        path,
        serialization_format="pt2",
        input_example=example,
        signature=signature,
        metadata=metadata,
        # given, so MLflow does not infer them by loading the model again in a subprocess
        pip_requirements=mlflow.pytorch.get_default_pip_requirements(),
    )
    export_s = time.perf_counter() - start
    mlmodel_path = os.path.join(path, "MLmodel")
    mlmodel = Model.load(mlmodel_path)
    add_to_model(mlmodel, loader_module="mlflow.pytorch", data="data", conda_env="conda.yaml",
                 python_env="python_env.yaml", model_config={"device": "cpu"})  # fmt: skip
    mlmodel.save(mlmodel_path)
    with open(os.path.join(path, CLASS_NAMES_FILE), "w", encoding="utf-8") as f:
        json.dump(names, f, indent=1)
    np.savez_compressed(os.path.join(path, EXAMPLE_FILE), x=example.numpy())
    return ExportedModel(shape, num_classes, names, export_s)
