"""The registered model loads with MLflow's own loaders (issue 15, item 2), against a real ``mlflow server``:
``mlflow.pytorch.load_model`` / ``mlflow.pyfunc.load_model`` on ``models:/name@alias`` give the logits of the
project's loader; the pt2 file passes MLflow's pickle-free check; the signature, class names and input example
are there, and so are the project's checkpoint and the MLmodel's ``tdn`` section."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import yaml

from tdn.tracking.mlflow_store import get_or_create_experiment, set_global_tracking_uri, tracking_client
from tdn.tracking.registry import load_registered_model, register_checkpoint

CLASSES = ["walk left", "walk right", "jump"]
T, S = 4, 64  # segments; the training crop, from the checkpoint's training config (not the default 224)


def _checkpoint(path: Path) -> str:
    from tdn.checkpoints.project import save_checkpoint
    from tdn.model.networks import ModelConfig, build_model_from_config

    cfg = ModelConfig(arch="resnet18", num_classes=len(CLASSES), num_segments=T, width=0.25, dropout=0.0)
    torch.manual_seed(3)
    model = build_model_from_config(cfg)
    with torch.no_grad():  # BN statistics away from the identity, so eval mode is really what is exported
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    save_checkpoint(str(path), model, cfg, CLASSES, epoch=3, step=12,
                    train_config={"loader": {"input_size": S, "eval_short_side": 73}})  # fmt: skip
    return str(path)


def _logged_model_ids(client, experiment_id: str, run_id: str) -> list[str]:
    found = client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'")
    return [m.model_id for m in found]


def test_registered_model_loads_with_mlflow_pytorch_and_pyfunc(mlflow_server, tmp_path):
    import mlflow.artifacts
    import mlflow.pyfunc
    import mlflow.pytorch
    from mlflow.models import get_model_info

    assert not os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION")  # MLflow checks the pt2 is pickle-free
    client = tracking_client(mlflow_server.uri)
    experiment_id = get_or_create_experiment(client, "model-export")
    run_id = client.create_run(experiment_id, run_name="export").info.run_id
    ckpt = _checkpoint(tmp_path / "checkpoint.pt")
    name, uri = "tdn-export", "models:/tdn-export@champion"
    try:
        version = register_checkpoint(client, run_id, experiment_id, ckpt, name, {"val_top1_pct": 50.0},
                                      alias="champion")  # fmt: skip
        ours, meta = load_registered_model(uri, mlflow_server.uri)  # the project's loader still works
        assert meta["class_names"] == CLASSES and meta["epoch"] == 3
        ours.eval()
        exported = mlflow.pytorch.load_model(uri)
        generator = torch.Generator().manual_seed(0)
        for n in (1, 3):  # exported with a batch of 2: the batch dim is dynamic
            x = torch.randn(n, T, 5, 3, S, S, generator=generator)
            with torch.no_grad():
                expected, got = ours(x), exported(x)
            assert got.shape == (n, len(CLASSES))
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        predicted = mlflow.pyfunc.load_model(uri).predict(x.numpy())
        np.testing.assert_allclose(predicted, expected.numpy(), atol=1e-5, rtol=0)

        info = get_model_info(uri)
        assert {"pytorch", "python_function"} <= set(info.flavors)
        assert info.signature.inputs.inputs[0].shape == (-1, T, 5, 3, S, S)
        assert info.signature.outputs.inputs[0].shape == (-1, len(CLASSES))
        assert info.metadata["class_names"] == CLASSES
        folder = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "m")))
        assert {"checkpoint.pt", "MLmodel", "class_names.json", "input_example.npz"} <= set(
            os.listdir(folder)
        )
        assert (folder / "data" / "model.pt2").is_file()
        assert json.loads((folder / "class_names.json").read_text()) == CLASSES
        with np.load(folder / "input_example.npz", allow_pickle=False) as example:
            assert example["x"].shape == (2, T, 5, 3, S, S) and example["x"].dtype == np.float32
        mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
        assert mlmodel["model_id"] == _logged_model_ids(client, experiment_id, run_id)[0]
        assert mlmodel["run_id"] == run_id
        assert (
            mlmodel["tdn"]["format"] == "tdn-checkpoint/1" and mlmodel["tdn"]["checkpoint"] == "checkpoint.pt"
        )
        assert mlmodel["tdn"]["metrics"] == {"val_top1_pct": 50.0} and "export_error" not in mlmodel["tdn"]
        # the UI's links: the run lists the logged model as its output, the logged model lists the version
        model_id = mlmodel["model_id"]
        assert [o.model_id for o in client.get_run(run_id).outputs.model_outputs] == [model_id]
        assert json.loads(client.get_logged_model(model_id).tags["mlflow.modelVersions"]) == [
            {"name": name, "version": int(version)}
        ]

        # a retry (the tracker after an outage, a re-launched run) finds the version: nothing is exported again
        again = register_checkpoint(client, run_id, experiment_id, ckpt, name, {"val_top1_pct": 50.0},
                                    alias="champion")  # fmt: skip
        assert again == version and len(client.search_model_versions(f"name = '{name}'")) == 1
        assert len(_logged_model_ids(client, experiment_id, run_id)) == 1
    finally:
        set_global_tracking_uri(None)
