"""What a registered model's page and a model version's page say about themselves (their MLflow description,
rendered as Markdown): the input layout (N, T, 5, 3, H, W), the normalisation, the classes, where the version
came from and how to load and call it.

    describe_version(client, name, version, checkpoint_path, run_id, metrics)
        registry.register_checkpoint calls it for every version it registers or finds again (idempotent):
        the version's description, and the registered model's when it has none yet

The logged model behind a version has its own description (model_export.model_description, with the input
example); these are shorter and say which URI to load.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tdn.checkpoints.project import load_checkpoint
from tdn.tracking.mlflow_store import DESCRIPTION_TAG, version_model_id
from tdn.tracking.model_export import CLASS_NAMES_FILE, DESCRIBED_CLASSES, input_size_of

if TYPE_CHECKING:
    from mlflow import MlflowClient

# the registered version's tags (training/run_log.registered_score) and how the description names them
SCORES = {
    "val_top1_pct": "val top-1 {:.1f}%",
    "val_top5_pct": "val top-5 {:.1f}%",
    "train_loss": "train loss {:.4f}",
}


def _classes(names: Sequence[str]) -> str:
    listed = ", ".join(f"{i} {n}" for i, n in enumerate(names[:DESCRIBED_CLASSES]))
    more = (
        f", ... ({len(names)} in `{CLASS_NAMES_FILE}` of the logged model)"
        if len(names) > DESCRIBED_CLASSES
        else ""
    )
    return f"**Classes** (index order): {listed}{more}" if names else "**Classes**: unnamed (class indices)."


def _input(t: int, size: int) -> str:
    from pipeline.loading.transforms import IMAGENET_MEAN, IMAGENET_STD

    return (
        f"**Input** float32 `(N, T, 5, 3, H, W)` = `(N, {t}, 5, 3, {size}, {size})`: N clips x T={t} segments x 5 "
        f"consecutive frames x RGB x H x W ({size} x {size} crops), values in [0, 1] normalised per channel "
        f"with the ImageNet mean {IMAGENET_MEAN} and std {IMAGENET_STD}."
    )


def version_description(
    ckpt: Mapping[str, Any], uri: str, run_id: str, metrics: Mapping[str, float], exported: bool
) -> str:
    """Markdown for one version: what the model is, where it came from, its input and output, how to call it."""
    cfg = ckpt.get("model_config") or {}
    t, size = int(cfg.get("num_segments", 0)), input_size_of(ckpt)
    names = [str(n) for n in ckpt.get("class_names") or []]
    num_classes = int(cfg.get("num_classes", len(names)))
    epoch = f"epoch {int(metrics['epoch'])}" if "epoch" in metrics else "its best epoch"
    scores = ", ".join(shape.format(metrics[key]) for key, shape in SCORES.items() if key in metrics)
    load = (
        f'`model = mlflow.pytorch.load_model("{uri}")` (no project code, no pickle; already in inference '
        "mode: do not call `.eval()`, it raises NotImplementedError on an exported module), "
        "`logits = model(x)`; or `mlflow.pyfunc.load_model(uri).predict(x_numpy)`. "
        f'The project checkpoint: `tdn.tracking.registry.load_registered_model("{uri}")`.'
        if exported
        else f'`model, ckpt = tdn.tracking.registry.load_registered_model("{uri}")` (this project\'s code; the '
        "model was registered as a checkpoint only), `model.eval()`, `logits = model(x)`."
    )
    return "\n".join(
        [
            f"TDN `{cfg.get('variant', '?')}` ({cfg.get('arch', '?')}, width {cfg.get('width', 1)}), {t} "
            f"segments, {size} px crops, {num_classes} classes: the checkpoint of training run `{run_id}` at "
            f"{epoch}" + (f" ({scores})." if scores else "."),
            "",
            _input(t, size),
            f"**Output** float32 `(N, {num_classes})` logits, averaged over the segments (softmax for "
            "probabilities).",
            _classes(names),
            "",
            f"**Load and call**: {load}",
        ]
    )


def registered_model_description(name: str, ckpt: Mapping[str, Any]) -> str:
    """Markdown for the registered model: what its versions are and how to load one."""
    cfg = ckpt.get("model_config") or {}
    names = [str(n) for n in ckpt.get("class_names") or []]
    return "\n".join(
        [
            f"TDN (Temporal Difference Networks, CVPR 2021) action recognition models, `{cfg.get('variant', '?')}` "
            f"{cfg.get('arch', '?')}, {cfg.get('num_classes', len(names))} classes, trained with this project's "
            "`python -m jobs.train`. Each version is one training run's best checkpoint (by "
            "`checkpoint.monitor`); its description gives its segments, crop size and scores.",
            "",
            _input(int(cfg.get("num_segments", 0)), input_size_of(ckpt)).replace(
                "**Input**", "**Input** (the first version's sizes)"
            ),
            _classes(names),
            "",
            f'**Load**: `mlflow.pytorch.load_model("models:/{name}@<alias>")` or `"models:/{name}/<version>"`, '
            "then `logits = model(x)`, logits `(N, classes)` averaged over the segments.",
        ]
    )


def describe_version(
    client: MlflowClient,
    name: str,
    version: str,
    checkpoint_path: str,
    run_id: str,
    metrics: Mapping[str, float],
) -> None:
    """Set the version's description, and the registered model's when it has none (a later version with other
    sizes leaves the first one's). Exported: the version's logged model carries a description too
    (registry.py sets it only for a model that exported to pt2)."""
    ckpt = load_checkpoint(checkpoint_path)
    mv = client.get_model_version(name, version)
    model_id = version_model_id(mv.model_id, mv.source or "")
    exported = bool(model_id and DESCRIPTION_TAG in client.get_logged_model(model_id).tags)
    uri = f"models:/{name}/{version}"
    text = version_description(ckpt, uri, run_id, metrics, exported)
    if mv.description != text:
        client.update_model_version(name, version, description=text)
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=registered_model_description(name, ckpt))
