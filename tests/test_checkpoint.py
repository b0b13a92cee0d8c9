"""Weights in and out: official TDN checkpoints, ImageNet initialisation, project checkpoints (local + S3)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tdn.checkpoints.imagenet import load_imagenet_weights
from tdn.checkpoints.official import load_official_checkpoint
from tdn.checkpoints.official_random import P, random_official_state_dict
from tdn.checkpoints.project import (
    CheckpointError,
    TrainingState,
    load_checkpoint,
    load_model_checkpoint,
    save_checkpoint,
)
from tdn.model.networks import ModelConfig, build_model, build_model_from_config

# ---------------------------------------------------------------------------------------------- official layout


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, depths=(3, 4, 6, 3)) -> torch.Tensor:
    """The released TDN's eval-mode function, written out with every conv bias applied explicitly."""
    n, t = x.shape[:2]
    a, b = (0.5, 0.5) if t == 8 else (0.75, 0.25)

    def conv(v, name, stride=1, padding=0, groups=1):
        return F.conv2d(
            v, sd[P + name + ".weight"], sd.get(P + name + ".bias"), stride, padding, groups=groups
        )

    def bn(v, name):
        s = (1, -1, 1, 1)
        mean, var = sd[P + name + ".running_mean"].view(s), sd[P + name + ".running_var"].view(s)
        return (v - mean) / torch.sqrt(var + 1e-5) * sd[P + name + ".weight"].view(s) + sd[
            P + name + ".bias"
        ].view(s)

    def mse(v, pre):
        r = bn(conv(v, pre + "conv1"), pre + "bn1")
        c = conv(r, pre + "conv2", padding=1, groups=r.shape[1])
        r5, c5 = r.view(n, t, *r.shape[1:]), c.view(n, t, *c.shape[1:])
        fwd = F.pad(c5[:, 1:] - r5[:, :-1], (0, 0, 0, 0, 0, 0, 0, 1)).reshape(r.shape)
        bwd = F.pad(c5[:, :-1] - r5[:, 1:], (0, 0, 0, 0, 0, 0, 1, 0)).reshape(r.shape)
        ys = []
        for d in (fwd, bwd):
            s2 = bn(conv(F.avg_pool2d(d, 2), pre + "conv3_smallscale2", padding=1), pre + "bn3_smallscale2")
            s2 = F.interpolate(s2, d.shape[2:])
            s4 = bn(conv(d, pre + "conv3_smallscale4", padding=1), pre + "bn3_smallscale4")
            y = bn(conv(d / 3 + s2 / 3 + s4 / 3, pre + "conv3"), pre + "bn3")
            ys.append(torch.sigmoid(y) - 0.5)
        return v + v * (0.5 * ys[0] + 0.5 * ys[1])

    def shift(v, pre):
        nt, c, h, w = v.shape
        z = v.view(n, t, c, h, w).permute(0, 3, 4, 2, 1).reshape(n * h * w, c, t)
        z = F.conv1d(z, sd[P + pre + "shift.conv.weight"], padding=1, groups=c)
        return z.view(n, h, w, c, t).permute(0, 4, 3, 1, 2).reshape(nt, c, h, w)

    def layer(v, name, blocks, stride, temporal):
        for i in range(blocks):
            pre = f"{name}.{i}."
            out = F.relu(bn(conv(v, pre + "conv1"), pre + "bn1"))
            if temporal:
                out = shift(mse(out, pre + "mse."), pre)
            out = F.relu(bn(conv(out, pre + "conv2", stride if i == 0 else 1, 1), pre + "bn2"))
            out = bn(conv(out, pre + "conv3"), pre + "bn3")
            if i == 0:
                v = bn(conv(v, pre + "downsample.0", stride), pre + "downsample.1")
            v = F.relu(out + v)
        return v

    frames = x.reshape(n * t, 15, *x.shape[-2:])
    xs = [frames[:, 3 * k : 3 * k + 3] for k in range(5)]
    d = F.avg_pool2d(torch.cat([xs[k + 1] - xs[k] for k in range(4)], 1), 2)
    d = F.max_pool2d(F.relu(bn(conv(d, "conv1_5.0", 2, 3), "conv1_5.1")), 3, 2, 1)
    d1 = layer(d, "resnext_layer1", depths[0], 1, False)
    v = F.max_pool2d(F.relu(bn(conv(xs[2], "conv1", 2, 3), "bn1")), 3, 2, 1)
    v = a * v + b * F.interpolate(d, v.shape[2:])
    v = layer(v, "layer1_bak", depths[0], 1, False)
    v = a * v + b * F.interpolate(d1, v.shape[2:])
    v = layer(v, "layer2_bak", depths[1], 2, True)
    v = layer(v, "layer3_bak", depths[2], 2, True)
    v = layer(v, "layer4_bak", depths[3], 2, True)
    feats = v.mean(dim=(2, 3))
    logits = F.linear(feats, sd["module.new_fc.weight"], sd["module.new_fc.bias"])
    return logits.view(n, t, -1).mean(1)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("segments", [8, 3])
def test_official_checkpoint_matches_reference(tmp_path, segments):
    sd = random_official_state_dict(num_classes=11, seed=segments)
    path = tmp_path / "official.pth.tar"
    # released checkpoints carry metadata beside the weights (numpy scalars among them)
    best = np.float64(50.0)
    torch.save({"epoch": 3, "arch": "resnet50", "state_dict": sd, "best_prec1": best, "optimizer": {}}, path)
    model = load_official_checkpoint(str(path), arch="resnet50", num_segments=segments, num_classes=11)
    assert not model.training
    x = torch.randn(2, segments, 5, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(x)
        ref = reference_forward(sd, x)
    assert ref.abs().max() > 1e-3  # a degenerate network would make the comparison vacuous
    assert _rel_err(ours, ref) <= 1e-4
    # the biases matter: ignoring them changes the output, so the fold is what makes the match
    no_bias = {k: (torch.zeros_like(v) if k.endswith(".bias") and ".conv" in k else v) for k, v in sd.items()}
    with torch.no_grad():
        assert _rel_err(reference_forward(no_bias, x), ref) > 1e-3


@pytest.mark.parametrize("segments", [8, 3])
def test_official_checkpoint_logits_within_1e6_of_the_released_function(tmp_path, segments):
    """Tighter than the test above: the fused temporal modules must not move a logit.

    float32 logits within 1e-6 (relative to the largest) of the float64 reference, where the float32
    reference itself is 2.5e-7 / 4.7e-7 off; in float64 within 1e-7, the rounding of the float32 checkpoint's
    conv biases folded into BN (1.3e-8 / 1.1e-8 here): a changed function would be off by far more.
    """
    sd = random_official_state_dict(num_classes=11, seed=segments)
    path = tmp_path / "official.pth.tar"
    torch.save({"epoch": 3, "arch": "resnet50", "state_dict": sd}, path)
    model = load_official_checkpoint(str(path), arch="resnet50", num_segments=segments, num_classes=11)
    x = torch.randn(2, segments, 5, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    sd64 = {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}
    with torch.no_grad():
        ref = reference_forward(sd64, x.double())
        ours32 = model(x)
        ours64 = model.double()(x.double())
    assert _rel_err(ours32.double(), ref) <= 1e-6
    assert _rel_err(ours64, ref) <= 1e-7


def test_official_checkpoint_errors_name_keys(tmp_path):
    sd = random_official_state_dict(num_classes=5)
    broken = dict(sd)
    del broken[P + "layer3_bak.2.mse.conv3.weight"]
    broken[P + "layer9_bak.0.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": broken}, path)
    with pytest.raises(CheckpointError, match=r"layer9_bak\.0\.conv1\.weight"):
        load_official_checkpoint(str(path), "resnet50", 8, 5)
    del broken[P + "layer9_bak.0.conv1.weight"]
    torch.save({"state_dict": broken}, path)
    with pytest.raises(CheckpointError, match=r"missing keys.*layer3\.2\.ltdm\.expand\.weight"):
        load_official_checkpoint(str(path), "resnet50", 8, 5)
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError, match=r"fc\.weight: file \(5, 2048\) vs model \(7, 2048\)"):
        load_official_checkpoint(str(path), "resnet50", 8, 7)
    with pytest.raises(CheckpointError, match="resnet50/resnet101"):
        load_official_checkpoint(str(path), "resnet18", 8, 5)
    with pytest.raises(CheckpointError, match="no such file"):
        load_official_checkpoint(str(tmp_path / "nope.pth"), "resnet50", 8, 5)


@pytest.mark.slow
def test_convert_official_cli(tmp_path, repo_root):
    sd = random_official_state_dict(num_classes=4, seed=5)
    src, dst = tmp_path / "official.pth", tmp_path / "ours.pt"
    torch.save({"state_dict": sd}, src)
    names = tmp_path / "classes.txt"
    names.write_text("a\nb\nc\nd\n")
    cmd = [
        sys.executable,
        "-m",
        "jobs.convert_checkpoint",
        str(src),
        str(dst),
        "--arch",
        "resnet50",
        "--segments",
        "8",
        "--num-classes",
        "4",
        "--class-names",
        str(names),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120, cwd=repo_root)
    model, ckpt = load_model_checkpoint(str(dst))
    assert ckpt["class_names"] == ["a", "b", "c", "d"] and ckpt["model_config"]["arch"] == "resnet50"
    x = torch.randn(1, 8, 5, 3, 64, 64)
    with torch.no_grad():
        assert _rel_err(model.eval()(x), reference_forward(sd, x)) <= 1e-4
    bad = subprocess.run(
        cmd[:-6] + ["--segments", "8", "--num-classes", "9"], capture_output=True, text=True, cwd=repo_root
    )
    assert bad.returncode == 2 and "shape mismatches" in bad.stderr


# ---------------------------------------------------------------------------------------------- ImageNet


def _torchvision_layout(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    # our TSN model has torchvision's ResNet names; add the ImageNet classifier torchvision files carry
    model = build_model(arch, 1000, 1, "tsn", dropout=0.0)
    g = torch.Generator().manual_seed(seed)
    return {
        k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v)
        for k, v in model.state_dict().items()
    }


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_imagenet_init_both_streams(tmp_path, arch):
    sd = _torchvision_layout(arch)
    path = tmp_path / f"{arch}.pth"
    torch.save(sd, path)
    fresh = build_model(arch, 10, 8)
    model = build_model(arch, 10, 8)
    load_imagenet_weights(model, str(path))
    ours = model.state_dict()
    assert torch.equal(ours["conv1.weight"], sd["conv1.weight"])
    assert torch.equal(ours["layer4.1.conv2.weight"], sd["layer4.1.conv2.weight"])
    assert torch.equal(ours["layer3.0.downsample.1.running_var"], sd["layer3.0.downsample.1.running_var"])
    assert torch.equal(ours["stdm.layers.0.1.conv1.weight"], sd["layer1.1.conv1.weight"])
    stem = ours["stdm.conv1.weight"]
    assert stem.shape[1] == 12
    for c in range(12):
        torch.testing.assert_close(stem[:, c], sd["conv1.weight"].mean(dim=1))
    # new parts keep their own initialisation
    assert torch.equal(ours["layer3.0.tconv.weight"], fresh.state_dict()["layer3.0.tconv.weight"])
    assert torch.equal(ours["stdm.bn1.weight"], torch.ones(64))
    assert ours["fc.weight"].shape == (10, sd["fc.weight"].shape[1])


def test_imagenet_init_rejects_mismatches(tmp_path):
    sd = _torchvision_layout("resnet18")
    path = tmp_path / "r18.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_imagenet_weights(build_model("resnet18", 3, 8, width=0.5), str(path))
    with pytest.raises(CheckpointError, match="missing"):
        load_imagenet_weights(build_model("resnet34", 3, 8), str(path))
    partial = {k: v for k, v in sd.items() if k != "layer2.1.bn2.weight"}
    with pytest.raises(CheckpointError, match=r"layer2\.1\.bn2\.weight"):
        load_imagenet_weights(build_model("resnet18", 3, 8), partial)
    extra = {**sd, "layer5.0.conv1.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"unexpected \['layer5\.0\.conv1\.weight'\]"):
        load_imagenet_weights(build_model("resnet18", 3, 8), extra)


# ---------------------------------------------------------------------------------------------- project format


def _roundtrip(uri: str) -> None:
    cfg = ModelConfig(arch="resnet18", num_classes=3, num_segments=4, width=0.25, l_tdm_multiscale=False)
    model = build_model_from_config(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(2, 4, 5, 3, 32, 32)
    model(x).sum().backward()
    opt.step()
    save_checkpoint(
        uri,
        model,
        cfg,
        ["x", "y", "z"],
        TrainingState(
            optimizer=opt, epoch=2, step=40, metrics={"top1": 0.5}, rng={"torch": torch.get_rng_state()}
        ),
    )
    loaded, ckpt = load_model_checkpoint(uri)
    assert ckpt["epoch"] == 2 and ckpt["step"] == 40 and ckpt["class_names"] == ["x", "y", "z"]
    assert ckpt["metrics"] == {"top1": 0.5} and "momentum_buffer" in str(ckpt["optimizer"])
    assert loaded.config == cfg
    model.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_project_checkpoint_local(tmp_path):
    _roundtrip(str(tmp_path / "ckpt" / "last.pt"))


def test_project_checkpoint_s3(s3_server):
    bucket = s3_server.create_bucket("model-ckpt")
    _roundtrip(bucket + "/runs/a/last.pt")


def test_project_checkpoint_errors(tmp_path):
    official = tmp_path / "official.pth"
    torch.save({"state_dict": {"module.new_fc.weight": torch.zeros(2, 2)}}, official)
    with pytest.raises(CheckpointError, match="load_official_checkpoint"):
        load_checkpoint(str(official))
    cfg = ModelConfig(arch="resnet18", num_classes=3, num_segments=4, width=0.25)
    path = str(tmp_path / "c.pt")
    save_checkpoint(path, build_model_from_config(cfg), cfg)
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"].pop("layer1.0.bn1.running_mean")
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): layer1\.0\.bn1\.running_mean"):
        load_model_checkpoint(path)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(str(tmp_path / "junk.pt"))


def test_checkpoint_written_before_model_config_lost_pretrained_still_loads(tmp_path):
    """Checkpoints of the earlier code store model_config["pretrained"] (None): the reader drops that key."""
    cfg = ModelConfig(arch="resnet18", num_classes=3, num_segments=4, width=0.25)
    model = build_model_from_config(cfg)
    path = str(tmp_path / "old.pt")
    save_checkpoint(path, model, cfg, ["x", "y", "z"])
    ckpt = torch.load(path, weights_only=True)
    ckpt["model_config"] = {**ckpt["model_config"], "pretrained": None}
    torch.save(ckpt, path)
    loaded, read = load_model_checkpoint(path)
    assert loaded.config == cfg and "pretrained" not in read["model_config"]
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
