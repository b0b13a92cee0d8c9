"""The benchmark scripts still run end to end (tiny settings) and print every route they compare.

No timing is asserted: speed goals are checked by running the benchmarks themselves (BENCHMARKS.md). This
only keeps the scripts from rotting as the code under them changes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from pipeline.capacity.unit_costs import load_unit_costs

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _ratio(line: str) -> float:
    """The 'x floor' column of a shard_throughput route line."""
    return float(re.split(r"\s{2,}", line.strip())[3])


def _unit_costs_copy(tmp_path: Path) -> Path:
    """A copy of the checked-in benchmarks/unit_costs.json for a benchmark's --write-unit-costs to update."""
    path = tmp_path / "unit_costs.json"
    path.write_text((ROOT / "benchmarks" / "unit_costs.json").read_text())
    return path


def test_shard_throughput_prints_every_route(tmp_path: Path):
    costs = _unit_costs_copy(tmp_path)
    out = _run("shard_throughput.py", "--videos", "1", "--size", "128x96", "--frames", "40,40",
               "--repeat", "1", "--write-unit-costs", str(costs))  # fmt: skip
    presets = out.split("== ")[1:]
    # 96 lines < 320: the source-size preset (UCF101/HMDB51's upscale: false) is measured too.
    assert len(presets) == 7 and presets[-1].startswith("train 2 views, source size")
    for block in presets:
        routes = {line.split(":")[0]: line for line in block.splitlines() if line.split(":")[0] in
                  ("floor", "bound", "ours", "official")}  # fmt: skip
        assert {"floor", "ours", "official"} <= set(routes), block
        assert _ratio(routes["floor"]) == 1.0
        assert _ratio(routes["ours"]) > 0 and _ratio(routes["official"]) > 0
        # The JPEG-only bound is printed for the default (YUV planes) encoder and sits above the floor.
        assert ("bound" in routes) == ("jpeg_encoder pil" not in block.splitlines()[0])
        if "bound" in routes:
            assert _ratio(routes["bound"]) > 1.0
    assert "JPEG encoders at" in out
    # its own unit costs are recorded beside the others (the capacity plan's input), with their source
    written = load_unit_costs(costs)
    mine = [s for s in written.shard if (s.source_width, s.source_height) == (128, 96)]
    assert len(mine) == 1 and mine[0].cpu_s_per_decoded_frame > 0 and mine[0].bytes_per_stored_jpeg > 0
    assert "shard_throughput.py" in mine[0].source.command and mine[0].source.measured
    assert len(written.shard) == len(load_unit_costs().shard) + 1 and written.gpu == load_unit_costs().gpu


def test_model_step_prints_tdn_and_tsn():
    out = _run("model_step.py", "--arch", "resnet18", "--segments", "2", "--size", "64", "--width", "0.25",
               "--repeats", "5")  # fmt: skip
    assert re.search(r"TDN \(ours\)\s+[\d.]+\s+[\d.]+\s+[\d.]+", out), out
    assert "step peak MiB" in out


def test_loader_throughput_compares_with_on_the_fly_decoding(tmp_path: Path):
    costs = _unit_costs_copy(tmp_path)
    out = _run("loader_throughput.py", "--videos-per-class", "1", "--size", "64x48", "--input-size", "32",
               "--samples", "4", "--repeats", "1", "--train-steps", "0",
               "--write-unit-costs", str(costs))  # fmt: skip
    cpu = [c for c in load_unit_costs(costs).loader if (c.decode, c.input_size) == ("cpu", 32)]
    assert len(cpu) == 1 and cpu[0].clips_per_core_s > 0 and "loader_throughput.py" in cpu[0].source.command
    assert re.search(r"shards_ours\s+[\d.]+\s+x [\d.]+ vs on-the-fly", out), out
    assert re.search(r"shards_ours_unverified\s+[\d.]+", out), out
    assert re.search(
        r"read-time verification \(frame CRC32 \+ shard sha256\): -?[\d.]+% of loader CPU", out
    ), out


def test_eval_throughput_prints_the_table():
    out = _run("eval_throughput.py", "--arch", "resnet18", "--segments", "2", "--size", "64", "--short-side", "72",
               "--videos", "2", "--frames", "20", "--repeats", "1", "--batch-size", "2", "--engine", "local")  # fmt: skip
    assert re.search(r"\| TDN \| 2×1×1 \|", out) and "TDN / TSN time ratio" in out, out


# What the GPU machine lacks: the GPU benchmark must run without them (and without torchvision on a CPU).
_ABSENT_ON_GPU_MACHINE = ("ray", "mlflow", "av", "webdataset", "simplejpeg", "yaml", "boto3", "torchvision")


def test_gpu_step_runs_on_cpu_without_the_packages_the_gpu_machine_lacks(tmp_path: Path) -> None:
    import json

    from tests.loader_shards import fake_videos, write_split

    split = str(tmp_path / "train")
    write_split(split, fake_videos(6), [3, 3], num_segments=3, size=(96, 72), half_res_neighbours=True)
    out = tmp_path / "out" / "gpu.json"
    blocker = (f"import runpy, sys; sys.modules.update(dict.fromkeys({_ABSENT_ON_GPU_MACHINE!r})); "
               f"sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")  # fmt: skip
    script = str(ROOT / "benchmarks" / "gpu_step.py")
    args = [
        sys.executable,
        "-c",
        blocker,
        script,
        "--shards",
        split,
        "--device",
        "cpu",
        "--tiny",
        "--out",
        str(out),
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    for line in ("decode (PIL stand-in):", "model TDN:", "model TSN:", "model TDN/TSN time ratio:",
                 "loader workers, host CPU per clip device/cpu:", "pipeline device path",
                 "pipeline cpu path"):  # fmt: skip
        assert line in text, text
    assert re.search(r"# .* \| torch \S+ \| python \S+ \| \d+ CPUs", text), text
    result = json.loads(out.read_text())
    assert set(result) == {"header", "decode", "model", "workers", "pipeline"}
    for mode in ("device", "cpu"):
        r = result["pipeline"][mode]
        assert r["clips_per_s"] > 0 and 0 <= r["data_wait_frac"] <= 1
        assert 0 <= r["next_batch_p50_s"] <= r["next_batch_p95_s"]
    # Loader workers of the device path only split blobs and draw boxes: far less CPU than decoding.
    assert result["workers"]["device_over_cpu"] < 1.0
    # Its figures replace the GPU ASSUMPTION of the unit costs (the capacity plan's input), as measured.
    costs = _unit_costs_copy(tmp_path)
    _run("record_gpu_step.py", str(out), "--gpu-type", "CPU-TEST", "--unit-costs", str(costs))
    recorded = load_unit_costs(costs)
    gpu = {g.gpu_type: g for g in recorded.gpu}
    assert gpu["CPU-TEST"].train_clips_per_s == result["model"]["tdn"]["train_clips_per_s"]
    assert gpu["CPU-TEST"].source.measured and gpu["H100"] == load_unit_costs().gpu[0]  # the rest kept
    assert {(c.decode, c.input_size) for c in recorded.loader} >= {("device", 64), ("cpu", 224)}
