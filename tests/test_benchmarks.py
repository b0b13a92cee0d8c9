"""The benchmark scripts still run end to end (tiny settings) and print every route they compare.

No timing is asserted: speed goals are checked by running the benchmarks themselves (BENCHMARKS.md). This
only keeps the scripts from rotting as the code under them changes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.capacity.unit_costs import load_unit_costs

ROOT = Path(__file__).resolve().parent.parent


def _run(module: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
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
    out = _run(
        "shard_throughput",
        "--videos",
        "1",
        "--size",
        "128x96",
        "--frames",
        "40,40",
        "--repeat",
        "1",
        "--write-unit-costs",
        str(costs),
    )
    presets = out.split("== ")[1:]
    # 96 lines < 320: the source-size preset (UCF101/HMDB51's upscale: false) is measured too.
    assert len(presets) == 7 and presets[-1].startswith("train 2 views, source size")
    for block in presets:
        routes = {
            line.split(":")[0]: line
            for line in block.splitlines()
            if line.split(":")[0] in ("floor", "bound", "ours", "official")
        }
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
    assert "benchmarks.shard_throughput" in mine[0].source.command and mine[0].source.measured
    assert len(written.shard) == len(load_unit_costs().shard) + 1 and written.gpu == load_unit_costs().gpu


@pytest.mark.slow
def test_model_step_prints_tdn_and_tsn(tmp_path: Path):
    report = tmp_path / "run.json"
    out = _run(
        "model_step",
        "--arch",
        "resnet18",
        "--segments",
        "2",
        "--size",
        "64",
        "--width",
        "0.25",
        "--repeats",
        "5",
        "--batch",
        "1",
        "2",
        "--json",
        str(report),
    )
    # one table per setting and clock: median [quartiles] per clip and ratio [per-round quartiles]
    cell = r"[\d.]+ \[[\d.]+-[\d.]+\]"
    rows = re.findall(rf"\[process CPU time\] TDN \(ours\)\s+{cell}\s+{cell}\s+{cell}\s+{cell}", out)
    assert len(rows) == 2, out
    assert "## batch 1 threads 1" in out and "## batch 2 threads 1" in out
    assert "step peak MiB" in out
    data = json.loads(report.read_text())
    assert set(data["settings"]) == {"batch 1 threads 1", "batch 2 threads 1"}
    times = data["settings"]["batch 2 threads 1"]["times"]["TDN (ours) forward"]
    assert len(times["cpu"]) == len(times["wall"]) == 5 and min(times["cpu"]) > 0
    tsn_ratio = data["ratios"]["batch 1 threads 1 TSN (ours)/TSN (ours) fwd+bwd cpu"]
    assert tsn_ratio == 1.0 and data["ratios"]["batch 1 threads 1 TDN (ours)/TSN (ours) forward cpu"] > 0
    # a run agrees with itself; the compare command is what BENCHMARKS.md uses for two runs
    same = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "timing.py"), "compare", str(report), str(report)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert same.returncode == 0 and "largest difference 0.0 %" in same.stdout, same.stdout + same.stderr


def test_model_timing_protocol_interleaves_and_compares(tmp_path: Path):
    from benchmarks.timing import Case, Protocol, TimingResult, compare_runs, run_protocol

    log: list[str] = []
    result = run_protocol(
        [Case("A", lambda: log.append("A")), Case("B", lambda: log.append("B"))],
        Protocol(repeats=5, warmup=2),
    )
    assert log == ["A", "B"] * 7  # 2 warm-up rounds, then 5 timed rounds, always A then B
    assert all(len(result.times[c][clock]) == 5 for c in "AB" for clock in ("wall", "cpu"))
    spread = result.spread("A", "wall")
    assert spread.lo <= spread.q1 <= spread.median <= spread.q3 <= spread.hi
    assert result.ratio("A", "A", "cpu").per_round.median == 1.0
    made = TimingResult(
        ["x", "y"], {"x": {"cpu": [2.0] * 5, "wall": [1.0] * 5}, "y": {"cpu": [1.0] * 5, "wall": [1.0] * 5}}
    )
    assert made.ratio("x", "y", "cpu").of_medians == 2.0
    with pytest.raises(ValueError):
        Protocol(repeats=3)
    # two runs agree when every common ratio is within the tolerance; the command exits 1 otherwise
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"ratios": {"r cpu": 1.20, "s cpu": 1.10}}))
    second.write_text(json.dumps({"ratios": {"r cpu": 1.25, "s cpu": 1.11}}))
    rows = compare_runs(json.loads(first.read_text()), json.loads(second.read_text()))
    assert [round(r.relative, 3) for r in rows] == [0.04, 0.009]
    cmd = [sys.executable, str(ROOT / "benchmarks" / "timing.py"), "compare", str(first), str(second)]
    assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    assert subprocess.run([*cmd, "--tolerance", "0.03"], capture_output=True, timeout=60).returncode == 1


def test_model_op_profile_attributes_every_region():
    out = _run(
        "op_profile",
        "--arch",
        "resnet18",
        "--segments",
        "2",
        "--size",
        "64",
        "--width",
        "0.25",
        "--mode",
        "step",
        "--repeats",
        "1",
    )
    regions = {"ResNet (-TSN)", "L-TDM", "temporal conv", "S-TDM stem", "S-TDM layer1..", "S-TDM fusion"}
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "forward ms" in line and "backward ms" in line)
    table = {line[:16].strip(): line[16:].split() for line in lines[start + 1 : start + 1 + len(regions)]}
    assert set(table) == regions, out
    # every region ran both ways: forward and backward CPU ms are positive
    for name, cells in table.items():
        assert float(cells[0]) > 0 and float(cells[1]) > 0, (name, out)
    assert re.search(r"L-TDM\s+backward\s+aten\.\w+", out), out


@pytest.mark.slow
def test_loader_throughput_compares_with_on_the_fly_decoding(tmp_path: Path):
    costs = _unit_costs_copy(tmp_path)
    out = _run(
        "loader_throughput",
        "--videos-per-class",
        "1",
        "--size",
        "64x48",
        "--input-size",
        "32",
        "--samples",
        "4",
        "--repeats",
        "1",
        "--write-unit-costs",
        str(costs),
    )
    cpu = [c for c in load_unit_costs(costs).loader if (c.decode, c.input_size) == ("cpu", 32)]
    assert (
        len(cpu) == 1
        and cpu[0].clips_per_core_s > 0
        and "benchmarks.loader_throughput" in cpu[0].source.command
    )
    assert re.search(r"shards_ours\s+[\d.]+\s+x [\d.]+ vs on-the-fly", out), out
    assert re.search(r"shards_ours_unverified\s+[\d.]+", out), out
    assert re.search(
        r"read-time verification \(frame CRC32 \+ shard sha256\): -?[\d.]+% of loader CPU", out
    ), out


@pytest.mark.slow
def test_eval_throughput_prints_the_table():
    out = _run(
        "eval_throughput",
        "--arch",
        "resnet18",
        "--segments",
        "2",
        "--size",
        "64",
        "--short-side",
        "72",
        "--videos",
        "2",
        "--frames",
        "20",
        "--repeats",
        "1",
        "--batch-size",
        "2",
        "--engine",
        "local",
    )
    assert re.search(r"\| TDN \| 2×1×1 \|", out) and "TDN / TSN time ratio" in out, out


@pytest.mark.slow
def test_predict_throughput_compares_raw_files_with_shards():
    out = _run(
        "predict_throughput",
        "--videos",
        "4",
        "--size",
        "64x48",
        "--frames",
        "16,24",
        "--input",
        "40",
        "--short",
        "48",
        "--repeats",
        "1",
    )
    rates = {
        what: float(m.group(1))
        for what in ("evaluate on shards", "predict on raw files")
        if (m := re.search(rf"\| {what} \| ([\d.]+) \|", out))
    }
    assert len(rates) == 2 and min(rates.values()) > 0, out
    ratio = re.search(r"\| predict / evaluate \| ([\d.]+)x \|", out)
    assert ratio and float(ratio.group(1)) == pytest.approx(
        rates["predict on raw files"] / rates["evaluate on shards"], rel=0.05
    ), out
