"""The jobs' command line (jobs/cli.py): flags, presets by name, and exit codes with one-line errors.

The helper is exercised on a small config dataclass in-process, then as a user runs it: `python -m jobs.shard`
as a subprocess from the repository root (only cheap paths: bad flags, a missing dataset, --dry-run).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from jobs.cli import (
    PRESETS,
    BadInput,
    Job,
    JobFailed,
    Option,
    Shortcut,
    build_parser,
    field_flag,
    parse,
    resolve_config,
    run,
    show_value,
)
from pipeline.config import ConfigError
from pipeline.shards.job import ShardConfig

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Optim:
    lr: float = 0.01
    steps: list[int] = field(default_factory=lambda: [30, 45])
    schedule: Literal["step", "cosine"] = "step"


@dataclass
class Toy:
    name: str = "run"
    workers: int = 1
    gpu: bool = False
    pretrained: str | None = None
    sizes: list[list[int]] = field(default_factory=lambda: [[8, 6]])
    optim: Optim = field(default_factory=Optim)


def _sizes(text: str) -> list[list[int]]:
    try:
        return [[int(v) for v in s.split("x")] for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes look like 8x6,16x12, got {text!r}") from None


def _check(cfg: Toy) -> None:
    if cfg.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {cfg.workers}")


TOY = Job(
    "toy",
    Toy,
    "A toy job.\n\nMore text.",
    check=_check,
    shortcuts=(
        Shortcut("--n", "workers"),
        Shortcut("--gpus", "gpu", const="true"),
        Shortcut("--sizes", "sizes", parse=_sizes),
    ),
    options=(
        Option("out", "output folder"),
        Option("--dry-run", "nothing written", switch=True),
        Option("--address", "a cluster", default="local"),
    ),
)


def test_flags_shortcuts_and_options(tmp_path):
    preset = tmp_path / "toy.yaml"
    preset.write_text("name: from-yaml\noptim:\n  lr: 0.5\n")
    cfg, args = parse(
        TOY,
        [
            "OUT",
            "--config",
            str(preset),
            "--optim.steps",
            "5,7",
            "--n",
            "3",
            "--gpus",
            "--sizes",
            "16x12,32x24",
            "--pretrained",
            "w.pt",
        ],
    )
    assert cfg == Toy(
        name="from-yaml",
        workers=3,
        gpu=True,
        pretrained="w.pt",
        sizes=[[16, 12], [32, 24]],
        optim=Optim(lr=0.5, steps=[5, 7]),
    )
    assert (args.out, args.dry_run, args.address) == ("OUT", False, "local")
    cfg, args = parse(TOY, ["o", "--workers", "2", "--dry-run", "--address", "auto"])
    assert cfg.workers == 2 and not cfg.gpu and args.dry_run and args.address == "auto"
    # the dotted flag and its shortcut set the same key: the last one given wins
    assert parse(TOY, ["o", "--workers", "2", "--n", "4"])[0].workers == 4
    # a shortcut with the name of a field replaces that field's flag (here --sizes reads WxH, not YAML)
    flags = [s for a in build_parser(TOY)._actions for s in a.option_strings]
    assert flags.count("--sizes") == 1 and "--optim.lr" in flags and "--traceback" in flags


def test_bad_input_is_named():
    with pytest.raises(BadInput, match=r"unknown flag --optim\.lrr; did you mean --optim\.lr"):
        parse(TOY, ["o", "--optim.lrr", "1"])
    with pytest.raises(ConfigError, match="optim.schedule"):
        parse(TOY, ["o", "--optim.schedule", "linear"])
    with pytest.raises(BadInput, match=r"--optim\.steps \[1,: not a YAML value"):
        parse(TOY, ["o", "--optim.steps", "[1,"])
    with pytest.raises(BadInput, match="sizes look like"):
        parse(TOY, ["o", "--sizes", "big"])
    with pytest.raises(ValueError, match="--workers must be >= 1"):
        parse(TOY, ["o", "--n", "0"])
    with pytest.raises(BadInput, match="unexpected argument"):
        parse(TOY, ["o", "p"])


def test_preset_by_name_or_path(tmp_path):
    assert resolve_config("shard_ucf101", ShardConfig) == PRESETS / "shard_ucf101.yaml"
    assert resolve_config(str(tmp_path / "my.yaml"), ShardConfig) == tmp_path / "my.yaml"  # a path stays one
    with pytest.raises(BadInput, match=r"--config shard_ucf10: .*did you mean shard_ucf101"):
        resolve_config("shard_ucf10", ShardConfig)
    with pytest.raises(BadInput, match=r"presets for ShardConfig: shard_hmdb51, shard_kinetics400"):
        resolve_config("zzz", ShardConfig)
    cfg, _ = parse(Job("shard", ShardConfig, ""), ["--config", "shard_hmdb51", "--dataset.root", "/d"])
    assert cfg.dataset.format == "hmdb51" and cfg.dataset.root == "/d"


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["o", "--optim.lrr", "1"], "toy: error: unknown flag --optim.lrr; did you mean --optim.lr,"),
        (["o", "--config", "{yaml}", "--name", "x"], "toy: error: unknown key optim.lrr for Optim"),
        (["o", "--config", "{broken}"], "toy: error: YAML syntax error in {broken} line 2, column 1"),
        (["o", "--config", "toy_preset"], "toy: error: --config toy_preset: no such file or preset"),
        (["o", "--config", "{missing}"], "toy: error: config file not found: {missing}"),
        (["o", "--n", "0"], "toy: error: --workers must be >= 1, got 0"),
        ([], "toy: error: the following arguments are required: out"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TDN_TRACEBACK", raising=False)
    files = {"yaml": tmp_path / "a.yaml", "broken": tmp_path / "b.yaml", "missing": tmp_path / "none.yaml"}
    files["yaml"].write_text("optim:\n  lrr: 0.1\n")
    files["broken"].write_text("optim: [\n")
    argv = [a.format(**files) for a in argv]
    ran = []
    assert run(TOY, argv, lambda cfg, args: ran.append(cfg) or 0) == 2
    out, err = capsys.readouterr()
    assert not ran and out == ""
    assert len(_lines(err)) == 1 and err.startswith(message.format(**files)), err


def test_job_outcomes_map_to_exit_codes(capsys, monkeypatch):
    monkeypatch.delenv("TDN_TRACEBACK", raising=False)
    assert run(TOY, ["o"], lambda cfg, args: 0) == 0
    assert run(TOY, ["o"], lambda cfg, args: 1) == 1  # a job's own failure status passes through
    assert capsys.readouterr().err == ""

    def fails(cfg: Toy, args: argparse.Namespace) -> int:
        raise JobFailed("3 of 10 videos failed")

    assert run(TOY, ["o"], fails) == 1
    assert capsys.readouterr().err == "toy: failed: 3 of 10 videos failed\n"

    def missing_input(cfg: Toy, args: argparse.Namespace) -> int:
        (Path(args.out) / "index.json").read_text()
        return 0

    assert run(TOY, ["/nowhere"], missing_input) == 2
    assert capsys.readouterr().err == "toy: error: No such file or directory: /nowhere/index.json\n"

    def bug(cfg: Toy, args: argparse.Namespace) -> int:
        raise ValueError("a bug, not bad input")

    with pytest.raises(ValueError, match="a bug"):  # only declared input errors become exit 2
        run(TOY, ["o"], bug)
    assert run(Job("toy", Toy, "", input_errors=(ValueError,)), ["o"], bug) == 2


def test_traceback_on_request(capsys, monkeypatch):
    monkeypatch.delenv("TDN_TRACEBACK", raising=False)
    assert run(TOY, ["o", "--n", "0", "--traceback"], lambda cfg, args: 0) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.endswith("toy: error: --workers must be >= 1, got 0\n")
    monkeypatch.setenv("TDN_TRACEBACK", "1")
    assert run(TOY, ["o", "--n", "0"], lambda cfg, args: 0) == 2
    assert "Traceback" in capsys.readouterr().err


def test_every_job_uses_the_helper():
    """Each jobs/*.py declares a JOB whose parser builds (no clashing flags); main() goes through run()."""
    jobs = sorted(p.stem for p in (ROOT / "jobs").glob("*.py") if p.stem not in ("__init__", "cli"))
    expected = {
        "shard",
        "train",
        "evaluate",
        "transfer",
        "reevaluate",
        "tables",
        "ensemble",
        "quickstart",
        "flops",
        "synthetic",
        "convert_checkpoint",
    }
    assert expected <= set(jobs)
    for name in jobs:
        module = importlib.import_module(f"jobs.{name}")
        assert isinstance(module.JOB, Job), name
        build_parser(module.JOB)
        source = (ROOT / "jobs" / f"{name}.py").read_text()
        assert "ArgumentParser(" not in source and "run(JOB, argv" in source, name


def test_every_job_runs_as_a_module_and_as_a_console_script(tmp_path):
    """`python -m jobs.<job>` and `tdn-<job>` (pyproject.toml [project.scripts]) for every job, and no job
    puts the checkout on sys.path itself; the installed script runs from any folder."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {f"tdn-{name.replace('_', '-')}": f"jobs.{name}:main" for name in _job_modules()}
    for name in _job_modules():
        assert callable(importlib.import_module(f"jobs.{name}").main), name
        assert "sys.path" not in (ROOT / "jobs" / f"{name}.py").read_text(), name
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    script = subprocess.run(
        [str(Path(sys.executable).with_name("tdn-flops")), "--help"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert script.returncode == 0, script.stderr[-3000:]
    assert script.stdout.startswith("usage: python -m jobs.flops "), script.stdout[:300]


def test_the_library_has_no_command_line():
    """Entry points live in jobs/: no argparse, `__main__` block or `__main__.py` in pipeline/ or tdn/."""
    offenders = []
    for package in ("pipeline", "tdn"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if path.name == "__main__.py":
                offenders.append(f"{rel}: __main__.py")
            for node in ast.walk(ast.parse(path.read_text(), str(rel))):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                    if "argparse" in names:
                        offenders.append(f"{rel}:{node.lineno}: imports argparse")
                if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
                    offenders.append(f"{rel}:{node.lineno}: if __name__ == '__main__'")
    assert not offenders, offenders


# ---------------------------------------------------------------------------------------------- as a user


def _shard(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("TDN_TRACEBACK", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "-m", "jobs.shard", *args],
        cwd=ROOT,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_shard_job_from_the_command_line(tmp_path):
    missing = tmp_path / "no-such-dataset"
    dry = _shard(
        "--config",
        "shard_ucf101",
        "--dataset.root",
        str(missing),
        "--dataset.annotations",
        str(missing / "lists"),
        "--dry-run",
    )
    assert dry.returncode == 2 and dry.stdout == "", dry.stderr[-3000:]
    assert _lines(dry.stderr) == [f"shard: error: dataset root {missing} does not exist or is not a folder"]

    bad = _shard("--train.viewz", "3", "--dry-run")
    assert bad.returncode == 2 and "usage:" not in bad.stderr
    assert _lines(bad.stderr) == [
        "shard: error: unknown flag --train.viewz; did you mean --train.views, "
        "--val.views, --train.short_side?"
    ]

    preset = _shard("--config", "shard_ucf", "--dry-run", TDN_TRACEBACK="1")
    assert preset.returncode == 2 and "Traceback (most recent call last)" in preset.stderr
    assert _lines(preset.stderr)[-1].startswith("shard: error: --config shard_ucf: no such file or preset")
    assert "did you mean shard_ucf101" in preset.stderr


# ------------------------------------------------------------------------------- --help and --print-config


def _help_entries(text: str) -> dict[str, str]:
    """--help text -> {flag: its metavar and help, words joined}: an entry starts on a line "  --flag"."""
    entries: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("  -") and not line.startswith("   "):
            flag, _, rest = line.strip().partition(" ")
            current = entries.setdefault(flag.rstrip(","), [])
            current.append(rest)
        elif line.startswith("   ") and current is not None:
            current.append(line)
        else:
            current = []
    return {flag: " ".join(" ".join(parts).split()) for flag, parts in entries.items()}


def _job_modules() -> list[str]:
    return sorted(p.stem for p in (ROOT / "jobs").glob("*.py") if p.stem not in ("__init__", "cli"))


def test_every_config_field_is_described_and_help_shows_its_default(monkeypatch):
    """Every leaf field of every job's config has a description in its dataclass (a new field needs one);
    --help lists it in its section with that description and its default; test-only fields stay hidden."""
    from pipeline.config_docs import describe_fields

    monkeypatch.setenv("COLUMNS", "2000")  # argparse wraps at hyphens too ("tdn- evaluation"): one line each

    undescribed, hidden = [], []
    for name in _job_modules():
        job = importlib.import_module(f"jobs.{name}").JOB
        raw = build_parser(job).format_help()
        entries = _help_entries(raw)
        text = " ".join(raw.split())  # argparse wraps lines: compare word runs
        shortcut_flags = {s.flag for s in job.shortcuts}  # a shortcut named like a field replaces its flag
        for doc in describe_fields(job.config):
            if not doc.help:
                undescribed.append(f"{job.config.__name__}.{doc.name} ({name})")
            flag = field_flag(doc.name)  # --section.field_name, or --field-name at the top level
            if doc.test_only:
                hidden.append(doc.name)
                assert flag not in entries, f"{name}: test-only {flag} is listed"
            elif flag not in shortcut_flags and f"--{doc.name}" not in shortcut_flags:
                assert "_" not in flag.split(".")[0], f"{name}: {flag} (a top-level flag takes hyphens)"
                assert flag in entries, f"{name}: {flag} missing from --help"
                entry = entries[flag]
                assert " ".join(doc.help.split()) in entry, (name, flag, entry)
                assert entry.endswith(f"(default: {show_value(doc.default)})"), (name, flag, entry)
        if "." in text and any("." in d.name for d in describe_fields(job.config)):
            sections = {d.name.split(".")[0] for d in describe_fields(job.config) if "." in d.name}
            for section in sections:
                assert f"{section} (--{section}.*):" in text, f"{name}: no group for {section}"
    assert not undescribed, f"fields without a # comment or docstring line: {undescribed}"
    assert {"run.crash_once_at_step", "run.crash_marker"} <= set(hidden)
    text = " ".join(build_parser(importlib.import_module("jobs.train").JOB).format_help().split())
    assert (
        "--optim.lr FLOAT learning rate for reference_batch samples per step (scaled linearly) "
        "(default: 0.01)" in text
    )
    assert "--optim.steps LIST epochs at which lr *= gamma (default: [30, 45, 55])" in text
    assert "--data.shards STR folder or s3:// prefix" in text and '(default: "")' in text
    assert "--verbose" in text and "--print-config" in text
    assert "--verbose" not in build_parser(importlib.import_module("jobs.tables").JOB).format_help()
    shard_help = " ".join(build_parser(importlib.import_module("jobs.shard").JOB).format_help().split())
    assert (
        "--config NAME|PATH a preset (jobs/configs/NAME.yaml) or a YAML file; presets: shard_hmdb51,"
        in shard_help
    )


@dataclass
class Inner:
    TEST_ONLY: ClassVar[frozenset[str]] = frozenset({"hook"})
    # a comment above
    # on two lines
    size: int = 3
    hook: str = ""  # noqa: E501
    ratio: float = 0.5  # 50% of it  # type: ignore[assignment]


@dataclass
class Outer:
    inner: Inner = field(default_factory=lambda: Inner(size=4))
    names: list[str] = field(default_factory=lambda: ["a"])  # the names


def test_field_descriptions_come_from_the_source():
    """The trailing comment of a field's line, else the comment lines right above; pragmas are dropped."""
    from pipeline.config_docs import describe_fields

    docs = {d.name: d for d in describe_fields(Outer)}
    assert (docs["inner.size"].help, docs["inner.size"].default) == ("a comment above on two lines", 4)
    assert (docs["inner.hook"].help, docs["inner.hook"].test_only) == ("", True)
    assert docs["inner.ratio"].help == "50% of it" and not docs["inner.ratio"].test_only
    assert (docs["names"].help, docs["names"].default) == ("the names", ["a"])
    text = build_parser(Job("outer", Outer, "")).format_help()  # a % in a description does not break argparse
    assert "50% of it" in text and "--inner.hook" not in text


def test_print_config_prints_the_resolved_yaml_and_runs_nothing(tmp_path, capsys):
    preset = tmp_path / "toy.yaml"
    preset.write_text("name: from-yaml\noptim:\n  lr: 0.5\n")
    ran = []
    argv = ["o", "--config", str(preset), "--optim.steps", "5,7", "--n", "0", "--print-config"]
    assert run(TOY, argv, lambda cfg, args: ran.append(cfg) or 0) == 0  # no --workers check: nothing runs
    out = capsys.readouterr().out
    assert not ran and out.startswith(f"# config: {Toy.__module__}:Toy\n")
    printed = tmp_path / "printed.yaml"
    printed.write_text(out)
    cfg, _ = parse(TOY, ["o", "--config", str(printed), "--n", "1"])
    assert cfg == Toy(name="from-yaml", workers=1, optim=Optim(lr=0.5, steps=[5, 7]))

    from jobs.train import main
    from pipeline.config import load_config
    from tdn.training.config import TrainConfig

    assert main(["--config", "synthetic_tiny", "--optim.lr", "0.5", "--print-config"]) == 0  # a preset name
    yaml_text = capsys.readouterr().out
    (tmp_path / "train.yaml").write_text(yaml_text)
    expected = load_config(TrainConfig, PRESETS / "synthetic_tiny.yaml", ["optim.lr=0.5"])
    assert load_config(TrainConfig, tmp_path / "train.yaml") == expected


def test_top_level_fields_take_hyphens_and_the_underscore_spelling_is_still_read():
    """The shard job's flags are spelled as every other job's (issue 25): --num-segments, --jpeg-quality;
    --num_segments, the spelling of earlier versions, still works and is not listed."""
    from jobs.shard import JOB as SHARD

    entries = _help_entries(build_parser(SHARD).format_help())
    assert {"--num-segments", "--jpeg-quality", "--max-failed-fraction"} <= set(entries)
    assert not {"--num_segments", "--jpeg_quality", "--max_failed_fraction"} & set(entries)
    for argv in (
        ["--num-segments", "4", "--jpeg-quality", "70"],
        ["--num_segments", "4", "--jpeg_quality", "70"],
    ):
        cfg, _ = parse(SHARD, argv)
        assert (cfg.num_segments, cfg.jpeg_quality) == (4, 70), argv
    assert "--dataset.split_number" in entries  # inside a section the key is written as in YAML


def test_tracking_uri_help_says_what_each_value_does(monkeypatch):
    """--tracking-uri: empty, none and a URI each explained; a job that needs MLflow says it refuses none."""
    monkeypatch.setenv("COLUMNS", "2000")
    for name in (
        "train",
        "evaluate",
        "predict",
        "tables",
        "reevaluate",
        "ensemble",
        "transfer",
        "quickstart",
    ):
        entry = _help_entries(build_parser(importlib.import_module(f"jobs.{name}").JOB).format_help())[
            "--tracking-uri"
        ]
        assert "empty = $MLFLOW_TRACKING_URI, else the local store sqlite:///mlruns/mlflow.db" in entry, entry
        assert "none = no tracking, nothing logged or registered" in entry and "http://HOST:5000" in entry, (
            entry
        )
        refuses = name in ("tables", "reevaluate", "ensemble", "transfer", "quickstart")
        assert ("none is refused" in entry) == refuses, (name, entry)


def test_tracking_uri_none_turns_tracking_off_or_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    """train: none = tracking.enabled false; evaluate of a registered model and the jobs that live in MLflow:
    exit 2 and one line, before any work; nothing is written to the default local store."""
    from jobs.evaluate import main as evaluate_main
    from jobs.tables import main as tables_main
    from jobs.train import JOB as TRAIN

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg, _ = parse(TRAIN, ["--tracking-uri", "none"])
    assert cfg.tracking.enabled is False and cfg.tracking.uri == "none"
    assert parse(TRAIN, ["--tracking-uri", ""])[0].tracking.enabled is True  # empty: the default store

    shards = str(ROOT / "tests" / "data" / "legacy_shards" / "test")
    argv = ["--model", "models:/tdn@champion", "--shards", shards, "--tracking-uri", "none"]
    assert evaluate_main([*argv, "--out", str(tmp_path / "eval")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("evaluate: error: --model models:/tdn@champion is read from the MLflow registry")
    assert tables_main(["--tracking-uri", "none", "--out", str(tmp_path / "tables")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("tables: error: --tracking-uri none: this job reads or writes MLflow runs"), line
    for job, args in (
        ("ensemble", ["--runs", "abc"]),
        ("replay_tracking", ["journal.jsonl"]),
        ("quickstart", []),
    ):
        module = importlib.import_module(f"jobs.{job}")
        assert module.main([*args, "--tracking-uri", "none"]) == 2, job
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"{job}: error: --tracking-uri none: "), line
    assert not (tmp_path / "mlruns").exists()
