"""benchmarks/train_throughput.py runs the product's loop on the GPU machine's packages alone, and no benchmark
carries its own optimiser step or shard reader.

The GPU machine has torch, torchvision, numpy, pillow, pyarrow, pyyaml and psutil, but no Ray, PyAV, MLflow,
webdataset, braceexpand or simplejpeg (shared/notes/gpu-mlflow-scale.md): the benchmark runs here, tiny, on
CPU, with those blocked, on shards the real shard job wrote, and every module it imported is checked against
what that machine has. torchvision is blocked too: on a CPU it is never imported (its wheels are CUDA builds).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

BLOCKED = ("ray", "av", "mlflow", "webdataset", "braceexpand", "simplejpeg", "torchvision", "boto3")
# Top-level import names of the GPU machine's packages that torch, numpy, pillow and pyarrow pull in
# (/work/.library/device/KINDS.md lists the installed distributions), plus this project's own packages.
ON_GPU_MACHINE = {
    "torch",
    "numpy",
    "PIL",
    "pyarrow",
    "yaml",
    "psutil",
    "typing_extensions",
    "sympy",
    "mpmath",
    "filelock",
    "fsspec",
    "jinja2",
    "markupsafe",
    "networkx",
    "packaging",
    "triton",
    "setuptools",
    "_distutils_hack",
    "pkg_resources",
    "optree",
    "google",
    "tqdm",
    "opt_einsum",
    "torchgen",
    "cloudpickle",
    "benchmarks",
    "pipeline",
    "tdn",
}

_RUNNER = """
import json, runpy, sys
sys.modules.update(dict.fromkeys({blocked!r}))
sys.argv = ["train_throughput", *sys.argv[1:]]
try:
    runpy.run_module("benchmarks.train_throughput", run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as exc:
    code = exc.code
names = sorted({{m.split(".")[0] for m, v in list(sys.modules.items()) if v is not None}})
internal = {{"cython_runtime"}}  # and _-prefixed: interpreter and extension internals, not packages
print("IMPORTED " + json.dumps([n for n in names if n not in sys.stdlib_module_names | internal and n[0] != "_"]))
sys.exit(code)
"""


def test_train_throughput_runs_the_real_loop_without_the_packages_the_gpu_machine_lacks(
    synthetic_shards: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "train.json"
    args = ["--split", str(synthetic_shards / "train"), "--device", "cpu", "--arch", "resnet18"]
    args += ["--width", "0.25", "--size", "48", "--eval-short-side", "56", "--threads", "1"]
    args += ["--batch", "4", "--steps", "3", "--warmup", "1", "--workers", "1", "--eval-batch", "30"]
    args += ["--eval-repeats", "1", "--decode-repeats", "1", "--ddp", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER.format(blocked=BLOCKED), *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    imported = set(json.loads(text.split("IMPORTED ", 1)[1].splitlines()[0]))
    assert not imported & set(BLOCKED)
    assert imported <= ON_GPU_MACHINE, f"not on the GPU machine: {sorted(imported - ON_GPU_MACHINE)}"

    assert re.search(
        r"^# \S.* \| torch \S+ \| torchvision not imported .* \| python \S+ \| \d+ CPUs", text, re.M
    )
    number, sci = r"(\d+\.\d+)", r"(\d[\d.e+-]*)"  # TFLOP/s of a tiny model: 3 significant digits
    for variant, decode, ddp in [
        ("TDN", "device", ""),
        ("TSN", "device", ""),
        ("TDN", "cpu", ""),
        ("TSN", "cpu", ""),
        ("TDN", "device", " \\+DDP"),
        ("TDN", "cpu", " \\+DDP"),
    ]:
        name = f"{variant}{ddp} decode={decode}"
        loop = re.search(
            rf"^loop  {name}\s+{number} clips/s  data wait\s+{number} %  next batch p50\s+{number} ms p95\s+"
            rf"{number} ms  host CPU\s+{number} ms/clip .*?\s+{sci} TFLOP/s = {sci} % of 989$",
            text,
            re.M,
        )
        assert loop, f"{name}:\n{text}"
        clips, wait, p50, p95, cpu, tflops, share = (float(v) for v in loop.groups())
        assert clips > 0 and 0 <= wait <= 100 and 0 <= p50 <= p95 and cpu > 0 and tflops > 0 and share > 0
        split = re.search(
            rf"^split {name}\s+ms/step: data wait {number} \| to device {number} \| forward\+backward "
            rf"{number} \| optimiser {number} \| step {number}; model alone {number} clips/s {sci} TFLOP/s, "
            rf"CPU {number} ms/clip$",
            text,
            re.M,
        )
        assert split, f"{name}:\n{text}"
        wait_ms, device_ms, fb_ms, opt_ms, step_ms, model_clips, model_tflops, model_cpu = (
            float(v) for v in split.groups()
        )
        assert fb_ms > 0 and opt_ms > 0 and device_ms > 0 and wait_ms >= 0
        assert model_clips > 0 and model_tflops > 0 and model_cpu > 0
        assert step_ms == pytest.approx(wait_ms + device_ms + fb_ms + opt_ms, abs=0.05)
    for variant in ("TDN", "TSN"):
        for protocol, size, views in (("1x1", 48, 30), ("10x3", 56, 30)):
            e = re.search(
                rf"^eval  {variant} {protocol}\s+{size}\^2, {views} views per call: {number} ms/view, "
                rf"{number} ms/video; CPU {number} ms/view$",
                text,
                re.M,
            )
            assert e and float(e.group(1)) > 0 and float(e.group(3)) > 0, f"{variant} {protocol}:\n{text}"
    assert re.search(rf"^decode PilJpegDecoder: \d+ images/s .* {number} ms/image", text, re.M), text
    for ratio in (
        "train_step_time_device",
        "train_step_cpu_device",
        "train_step_time_cpu",
        "eval_forward_10x3",
    ):
        assert re.search(rf"^TDN/TSN {ratio}: {number}$", text, re.M), text

    result = json.loads(out.read_text())
    assert result["header"]["split"]["listed_times"] == 1 and result["header"]["config"]["batch"] == 4
    assert result["header"]["split"]["classes"] == 4 and result["header"]["torch_threads"] == 1
    assert {(r["variant"], r["decode"], r["ddp"]) for r in result["runs"]} == {
        ("tdn", "device", False),
        ("tsn", "device", False),
        ("tdn", "cpu", False),
        ("tsn", "cpu", False),
        ("tdn", "device", True),
        ("tdn", "cpu", True),
    }
    for run in result["runs"]:
        # one loader worker: its CPU is counted apart from this process's (scheduler nanoseconds, /proc)
        assert run["loop"]["worker_cpu_ms_per_clip"] > 0 and run["loop"]["main_cpu_ms_per_clip"] > 0
        assert 0 <= run["loop"]["data_wait_frac"] <= 1
    # workers that decode JPEGs (decode: cpu) spend more per clip than workers that ship them (decode: device)
    worker_ms = {
        (r["variant"], r["decode"]): r["loop"]["worker_cpu_ms_per_clip"]
        for r in result["runs"]
        if not r["ddp"]
    }
    assert worker_ms[("tdn", "device")] < worker_ms[("tdn", "cpu")]
    # the 10x3 forward scores 30 views per video
    evals = {(e["variant"], e["protocol"]): e for e in result["evals"]}
    assert evals[("tdn", "10x3")]["ms_per_video"] == pytest.approx(30 * evals[("tdn", "10x3")]["ms_per_view"])

    # its figures replace the GPU ASSUMPTION of the unit costs (the capacity plan's input), as measured
    from pipeline.capacity.unit_costs import load_unit_costs

    costs = tmp_path / "unit_costs.json"
    costs.write_text((ROOT / "benchmarks" / "unit_costs.json").read_text())
    rec = subprocess.run(
        [sys.executable, "-m", "benchmarks.record_train_throughput", str(out), "--gpu-type", "CPU-TEST"]
        + ["--unit-costs", str(costs)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert rec.returncode == 0, rec.stderr
    recorded = load_unit_costs(costs)
    gpu = {g.gpu_type: g for g in recorded.gpu}
    tdn_device = next(
        r for r in result["runs"] if r["variant"] == "tdn" and r["decode"] == "device" and not r["ddp"]
    )
    assert gpu["CPU-TEST"].train_clips_per_s == tdn_device["loop"]["clips_per_s"]
    assert gpu["CPU-TEST"].source.measured and gpu["H100"] == load_unit_costs().gpu[0]  # the rest kept
    assert ("device", 48) in {(c.decode, c.input_size) for c in recorded.loader}


def test_a_small_split_is_listed_again_with_its_checks(synthetic_shards: Path, tmp_path: Path) -> None:
    """A run longer than an epoch reads the same tars again under new names; the index stays verifiable."""
    from benchmarks.train_throughput import relisted_split
    from pipeline.loading.config import LoaderConfig
    from pipeline.loading.shard_reading import read_index
    from pipeline.loading.train_loader import train_loader

    original = read_index(str(synthetic_shards / "train"))
    split = relisted_split(str(synthetic_shards / "train"), 3, tmp_path)
    index = read_index(split)  # checksum verified
    assert index.num_videos == 3 * original.num_videos and len(index.shards) == 3 * len(original.shards)
    assert [e.sha256 for e in index.shards] == 3 * [e.sha256 for e in original.shards]
    cfg = LoaderConfig(batch_size=16, num_workers=0, input_size=32, decode="device")
    loader = train_loader(split, cfg, rank=0, world_size=1, epoch=0, seed=0)
    assert len(loader) == -(-3 * original.num_videos // 16)
    batches = sum(1 for _ in loader)  # every tar read to its end: sizes and sha256 checked against the index
    assert batches == len(loader)


# ------------------------------------------------------------------------------------------------------------
# No benchmark carries its own optimiser step or shard reader: they time the product's (Trainer, train_loader).

_OPTIMISER_RECEIVER = re.compile(r"opt|sched", re.I)
_READER_MODULES = {"tarfile", "webdataset", "wds", "braceexpand"}


def own_steps_and_readers(source: str, name: str) -> list[str]:
    """What in a benchmark's source makes an optimiser step or reads shard tars itself, one line each."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in _READER_MODULES:
                    found.append(f"{where}: imports {alias.name} (reads shards itself)")
                if alias.name.startswith("torch.optim"):
                    found.append(f"{where}: imports {alias.name} (builds its own optimiser)")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] in _READER_MODULES:
                found.append(f"{where}: imports from {module} (reads shards itself)")
            if module.startswith("torch.optim") or (
                module == "torch" and any(a.name == "optim" for a in node.names)
            ):
                found.append(f"{where}: imports from {module} (builds its own optimiser)")
        elif isinstance(node, ast.Attribute):
            text = ast.unparse(node)
            if re.fullmatch(r"(torch\.)?optim\.[A-Z]\w*", text):
                found.append(f"{where}: {text} (builds its own optimiser)")
            elif node.attr in ("clip_grad_norm_", "clip_grad_value_", "clip_gradients"):
                found.append(f"{where}: {text} (clips gradients itself)")
            elif text.split(".")[0] in _READER_MODULES:
                found.append(f"{where}: {text} (reads shards itself)")
        elif isinstance(node, ast.Name) and node.id in (
            "clip_grad_norm_",
            "clip_grad_value_",
            "clip_gradients",
        ):
            found.append(f"{where}: {node.id} (clips gradients itself)")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "step":
            receiver = ast.unparse(node.func.value)
            if _OPTIMISER_RECEIVER.search(receiver):
                found.append(f"{where}: {receiver}.step() (its own optimiser step)")
    return found


def test_no_benchmark_has_its_own_optimiser_step_or_shard_reader() -> None:
    scripts = sorted((ROOT / "benchmarks").glob("*.py"))
    assert len(scripts) > 5
    found = [f for p in scripts for f in own_steps_and_readers(p.read_text(), p.name)]
    assert not found, "\n".join(found)


def test_the_scan_finds_an_optimiser_step_and_a_tar_reader(tmp_path: Path) -> None:
    bad = tmp_path / "bad_benchmark.py"
    bad.write_text(
        "import tarfile\n"
        "import torch\n"
        "from torch import optim\n"
        "def step(model, x, y, path):\n"
        "    with tarfile.open(path) as tar:\n"
        "        tar.getmembers()\n"
        "    opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "    torch.nn.functional.cross_entropy(model(x), y).backward()\n"
        "    torch.nn.utils.clip_grad_norm_(model.parameters(), 20)\n"
        "    opt.step()\n"
        "    self.scheduler.step()\n"
        "    optim.AdamW(model.parameters())\n"
    )
    found = own_steps_and_readers(bad.read_text(), bad.name)
    for line, what in [
        (1, "imports tarfile"),
        (3, "imports from torch (builds its own optimiser)"),
        (5, "tarfile.open (reads shards itself)"),
        (7, "torch.optim.SGD (builds its own optimiser)"),
        (9, "clip_grad_norm_ (clips gradients itself)"),
        (10, "opt.step() (its own optimiser step)"),
        (11, "self.scheduler.step() (its own optimiser step)"),
        (12, "optim.AdamW (builds its own optimiser)"),
    ]:
        assert any(f.startswith(f"bad_benchmark.py:{line}: ") and what in f for f in found), (
            line,
            what,
            found,
        )
    # the product's own calls are not flagged
    good = "from tdn.training.trainer import Trainer\ndef run(trainer, x, y):\n    trainer.train_step(x, y)\n"
    assert own_steps_and_readers(good, "good.py") == []
