"""The jobs' command line: one parser for a config dataclass and one runner that maps outcomes to exit codes.

    JOB = Job("train", TrainConfig, __doc__, shortcuts=(Shortcut("--workers", "run.workers"),
                                                       Shortcut("--gpus", "run.use_gpu", const="true")))

    def main(argv: Sequence[str] | None = None) -> int:
        return run(JOB, argv, train)          # train(cfg: TrainConfig, args: argparse.Namespace) -> int

Command line -> config (pipeline/config.py does the typing and names unknown keys):

    --config NAME|PATH     a preset name (jobs/configs/NAME.yaml) or a YAML file      -> base mapping
    --optim.lr 0.01        one flag per leaf field of the dataclass, read as YAML     -> overrides, in order
    --num-segments 8       a top-level field: hyphens (--num_segments is read too, not listed)
    --workers 4            a shortcut: = --run.workers 4 (--gpus: a switch = --run.use_gpu true)
    --address auto         the job's own options, not config                         -> args.address
    --print-config         print the resolved config (preset + flags) as YAML, exit 0, run nothing
    --verbose              (jobs that start Ray) Ray's known-harmless lines too (pipeline/ray_connect.py)
    --json                 (jobs that end with a summary, pipeline/summary.py) the result as one JSON line

``--help`` lists the fields by section (model, optim, run, ...), each with its default and the description
written beside it in the dataclass (pipeline/config_docs.py); fields in a dataclass's TEST_ONLY are accepted
but not listed.

Exit codes: 0 done; 1 the job failed (it returned 1 or raised JobFailed: one line "<job>: failed: ...");
2 bad input: a bad flag, an unknown key or value, a YAML syntax error, an unknown preset, a missing input file
(one line "<job>: error: ..." on stderr, no usage block). ``--traceback`` or ``TDN_TRACEBACK=1`` prints the
traceback as well. Any other exception is a bug and propagates with its traceback (Python exits 1).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import traceback
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, NoReturn, TypeVar, get_args, get_origin

import yaml

from pipeline.config import config_to_dict, load_config
from pipeline.config_docs import FieldDoc, describe_fields
from pipeline.errors import (
    InputError,
    Stopped,
)  # ConfigError, AnnotationError, ContractError, ...: user input, exit 2
from pipeline.ray_connect import set_verbose, settle
from pipeline.scratch import remove_abandoned
from pipeline.storage import StorageUnreachable
from pipeline.summary import Summary, print_summary

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

C = TypeVar("C", bound="DataclassInstance")  # a job's config class

PRESETS = Path(__file__).resolve().parent / "configs"
_FIELD = "cfg::"  # argparse dest prefix of the flags that set a config key


class BadInput(Exception):
    """Something the user gave is wrong (a flag, a value, a missing input): one line on stderr, exit 2."""


class JobFailed(Exception):
    """The job ran and did not succeed (too many broken videos, training gave up): one line, exit 1."""


@dataclass(frozen=True)
class Shortcut:
    """A short flag for a dotted config key: ``--workers 4`` = ``--run.workers 4``.

    ``const`` makes it a switch that takes no value (``--gpus`` = ``--run.use_gpu true``); ``parse`` reads a
    syntax YAML does not (``--sizes 96x72,112x84``) into a value. A shortcut replaces the dotted flag of the
    same name, if any.
    """

    flag: str
    key: str
    const: str | None = None
    parse: Callable[[str], Any] | None = None
    help: str = ""


TRACKING_URI_HELP = (
    "MLflow tracking: empty = $MLFLOW_TRACKING_URI, else the local store sqlite:///mlruns/mlflow.db (browse it "
    "with mlflow ui); none = no tracking, nothing logged or registered; anything else = that tracking URI "
    "(http://HOST:5000, sqlite:///PATH/mlflow.db)"
)


def tracking_uri_flag(key: str = "tracking_uri", needs_mlflow: str = "") -> Shortcut:
    """``--tracking-uri`` for the config key ``key``, its help saying what each value does; ``needs_mlflow``:
    why this job cannot run with ``none`` (the job's check refuses it, tdn.tracking.mlflow_store.tracking_off)."""
    refused = f"; none is refused: {needs_mlflow}" if needs_mlflow else ""
    return Shortcut("--tracking-uri", key, help=f"{TRACKING_URI_HELP}{refused} (= --{key})")


def model_source_flags(key: str = "model") -> tuple[Shortcut, ...]:
    """The flags naming the model a job reads (a ModelSource under ``key``): evaluate and predict."""
    return (
        Shortcut("--model", f"{key}.uri"),
        Shortcut("--official-checkpoint", f"{key}.official"),
        Shortcut("--arch", f"{key}.arch"),
        Shortcut("--segments", f"{key}.num_segments"),
        Shortcut("--num-classes", f"{key}.num_classes"),
    )


@dataclass(frozen=True)
class Option:
    """A flag of the job that is not a config field (``--address``, ``--dry-run``); a name without ``--`` is
    a positional argument. Read back from the ``args`` namespace the job function receives."""

    flag: str
    help: str
    switch: bool = False
    default: str | None = None
    many: bool = False  # a positional that takes any number of values (``SOURCE...``): a list in ``args``


@dataclass(frozen=True)
class Job(Generic[C]):
    name: str  # the error prefix: "shard: error: ..."
    config: type[C]
    doc: str  # the job module's docstring; its first paragraph heads --help
    shortcuts: tuple[Shortcut, ...] = ()
    options: tuple[Option, ...] = ()
    check: Callable[[C], None] | None = None  # more checks of the built config; ValueError = bad input
    # Exceptions of the job body that mean bad input (exit 2) besides BadInput, ConfigError, YAML errors and
    # FileNotFoundError, e.g. AnnotationError: a dataset's list files missing or malformed.
    input_errors: tuple[type[Exception], ...] = ()
    ray: bool = False  # the job starts or joins Ray: it gets --verbose (Ray's known-harmless lines too)
    epilog: str = ""  # shown at the end of --help as written (an example run and its output)
    summary: bool = False  # the job ends with a pipeline.summary.Summary: it gets --json (for scripts)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line from run(), not argparse's usage block + exit
        raise BadInput(message)


def build_parser(job: Job[Any]) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=f"python -m jobs.{job.name}",
        usage=f"%(prog)s {_usage(job)}",  # argparse's own lists every field: 80 lines for train
        description=job.doc.split("\n\n")[0],
        epilog=job.epilog or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    names = preset_names(job.config)
    preset_help = f"a preset ({_rel(PRESETS)}/NAME.yaml) or a YAML file" + (
        f"; presets: {', '.join(names)}" if names else ""
    )
    parser.add_argument("--config", metavar="NAME|PATH", help=preset_help)
    parser.add_argument("--traceback", action="store_true", help="print the traceback of an error too")
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (preset + flags) as YAML and exit without running",
    )
    if job.ray:
        parser.add_argument(
            "--verbose",
            action="store_true",
            help="also print Ray's known-harmless lines (start-up, progress reports, per-report echoes, notes)",
        )
    if job.summary:
        parser.add_argument(
            "--json",
            action="store_true",
            help="end with the result as one line of JSON (for scripts) instead of the summary",
        )
    for option in job.options:
        if not option.flag.startswith("-"):
            parser.add_argument(option.flag, nargs="*" if option.many else None, help=option.help)
        elif option.switch:
            parser.add_argument(option.flag, action="store_true", help=option.help)
        else:
            parser.add_argument(option.flag, default=option.default, metavar="VALUE", help=option.help)
    docs = {d.name: d for d in describe_fields(job.config)}
    shortcuts = parser.add_argument_group("shortcuts")
    for s in job.shortcuts:
        dest = _FIELD + s.key
        doc = docs.get(s.key)
        if s.const is not None:
            shortcuts.add_argument(
                s.flag,
                dest=dest,
                action="store_const",
                const=s.const,
                help=s.help or f"= --{s.key} {s.const}",
            )
        else:
            shortcuts.add_argument(
                s.flag,
                dest=dest,
                type=s.parse or str,
                metavar="VALUE",
                help=_help(doc, s.help or f"= --{s.key}"),
            )
    taken = {s.flag for s in job.shortcuts}
    groups: dict[str, argparse._ArgumentGroup] = {}
    for doc in docs.values():
        flag, plain = field_flag(doc.name), f"--{doc.name}"
        if flag != plain and plain not in taken:  # the underscore spelling of earlier versions, still read
            parser.add_argument(plain, dest=_FIELD + doc.name, help=argparse.SUPPRESS)
        if flag in taken or plain in taken:
            continue
        section = doc.name.rpartition(".")[0]
        if section not in groups:
            title = (
                f"{section} (--{section}.*)" if section else f"{job.config.__name__} (override the preset)"
            )
            groups[section] = parser.add_argument_group(title)
        groups[section].add_argument(
            flag,
            dest=_FIELD + doc.name,
            metavar=_metavar(doc.type),
            help=argparse.SUPPRESS if doc.test_only else _help(doc),
        )
    return parser


def field_flag(key: str) -> str:
    """The flag of a config field: ``--section.field_name`` inside a section (the key as written in YAML),
    ``--field-name`` for a top-level field, like the shortcuts (``--num-segments``; ``--num_segments`` is a
    hidden alias)."""
    return f"--{key}" if "." in key else f"--{key.replace('_', '-')}"


def _usage(job: Job[Any]) -> str:
    positional = " ".join(
        o.flag.upper() + ("..." if o.many else "") for o in job.options if not o.flag.startswith("-")
    )
    return " ".join(
        p for p in (positional, "[--config NAME|PATH] [--SECTION.FIELD VALUE ...] [options]") if p
    )


def _help(doc: FieldDoc | None, prefix: str = "") -> str:
    """``description (default: value)`` for --help, ``%`` escaped for argparse."""
    if doc is None:
        return prefix.replace("%", "%%")
    text = prefix if prefix and not prefix.startswith("= ") else "; ".join(t for t in (prefix, doc.help) if t)
    return f"{text} (default: {show_value(doc.default)})".lstrip().replace("%", "%%")


def show_value(value: Any) -> str:
    """A value as it would be typed after its flag: YAML flow style (``""``, ``null``, ``[30, 45]``)."""
    if value == "":
        return '""'
    text = yaml.safe_dump(config_to_dict(value), default_flow_style=True, width=1000)
    return text.removesuffix("\n...\n").strip()


def parse(job: Job[C], argv: Sequence[str] | None = None) -> tuple[C, argparse.Namespace]:
    """Command line -> (config, the namespace with the job's own options). Raises BadInput, ConfigError."""
    parser = build_parser(job)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        raise BadInput(_unknown_flags(parser, unknown))
    overrides = [
        f"{dest[len(_FIELD) :]}={value if isinstance(value, str) else json.dumps(value)}"
        for dest, value in vars(args).items()
        if dest.startswith(_FIELD) and value is not None
    ]
    for item in overrides:
        key, text = item.split("=", 1)
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BadInput(f"--{key} {text}: not a YAML value ({getattr(exc, 'problem', exc)})") from exc
    cfg = load_config(job.config, resolve_config(args.config, job.config) if args.config else None, overrides)
    if job.check is not None and not args.print_config:  # --print-config shows a config still incomplete
        job.check(cfg)
    return cfg, args


def run(job: Job[C], argv: Sequence[str] | None, body: Callable[[C, argparse.Namespace], int]) -> int:
    """Parse, run ``body(cfg, args)`` and map its outcome to the exit code (module docstring)."""
    raw = list(sys.argv[1:] if argv is None else argv)
    show = "--traceback" in raw or os.environ.get("TDN_TRACEBACK", "") not in ("", "0")
    try:
        cfg, args = parse(job, raw)
    except (BadInput, ValueError, yaml.YAMLError, FileNotFoundError) as exc:  # ConfigError is a ValueError
        return _report(job, "error", exc, show, 2)
    if args.print_config:
        print(config_yaml(cfg), end="", flush=True)
        return 0
    if job.ray:  # argv None: the process's own command line, so the process is the job (its stderr too)
        set_verbose(args.verbose, own_stderr=argv is None)
    remove_abandoned()  # scratch files and folders that killed jobs left in <tmp> (pipeline/scratch.py)
    try:
        return body(cfg, args)
    except JobFailed as exc:
        return _report(job, "failed", exc, show, 1)
    except Stopped as exc:  # a signal asked the job to stop, and it did: 143 (SIGTERM) / 130 (SIGINT)
        return _report(job, "stopped", exc, show, exc.exit_code)
    except (
        BadInput,
        InputError,
        StorageUnreachable,
        yaml.YAMLError,
        FileNotFoundError,
        *job.input_errors,
    ) as exc:
        return _report(job, "error", exc, show, 2)


def finish(summary: Summary, args: argparse.Namespace) -> None:
    """End a job with its summary (``--json``: its data as one JSON line), after the lines its Ray workers
    printed have reached the console (pipeline/ray_connect.py settle). Every job that has a result calls this
    last (a Job with ``summary=True``)."""
    settle()
    print_summary(summary, getattr(args, "json", False))


def config_yaml(cfg: Any) -> str:
    """The config as a preset file: the ``# config: module:Class`` line presets start with, then its YAML."""
    cls = type(cfg)
    header = f"# config: {cls.__module__}:{cls.__name__}\n"
    return header + yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def resolve_config(value: str, cls: type) -> Path:
    """``--config``: a YAML file, or a preset name resolved to jobs/configs/<name>.yaml."""
    path = Path(value)
    if path.is_file() or path.suffix in (".yaml", ".yml") or "/" in value or os.sep in value:
        return path  # load_config names a missing file
    preset = PRESETS / f"{value}.yaml"
    if preset.is_file():
        return preset
    names = preset_names(cls)
    close = difflib.get_close_matches(value, names, n=3, cutoff=0.5)
    hint = (
        f"did you mean {', '.join(close)}?"
        if close
        else f"presets for {cls.__name__}: {', '.join(names) or '-'}"
    )
    raise BadInput(f"--config {value}: no such file or preset in {_rel(PRESETS)}/; {hint}")


def preset_names(cls: type) -> list[str]:
    """The presets whose first line is ``# config: module:<cls name>``."""
    names = []
    for preset in sorted(PRESETS.glob("*.yaml")):
        with preset.open(encoding="utf-8") as f:
            first = f.readline().strip()
        if first.rsplit(":", 1)[-1].strip() == cls.__name__:
            names.append(preset.stem)
    return names


def _unknown_flags(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    flags = [a for a in unknown if a.startswith("-")]
    if not flags:
        return f"unexpected argument(s): {' '.join(unknown)}"
    known = [s for action in parser._actions for s in action.option_strings]
    flag = flags[0].split("=", 1)[0]
    close = difflib.get_close_matches(flag, known, n=3, cutoff=0.6)
    more = f" (and {len(flags) - 1} more)" if len(flags) > 1 else ""
    return f"unknown flag {flag}{more}" + (f"; did you mean {', '.join(close)}?" if close else "")


def _report(job: Job[Any], kind: str, exc: BaseException, show: bool, code: int) -> int:
    settle()  # the workers' last lines first: this line is the job's last (train's resume command)
    if show:
        traceback.print_exception(exc)
    print(f"{job.name}: {kind}: {_one_line(exc)}", file=sys.stderr, flush=True)
    return code


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        where = "" if mark.name.startswith("<") else f"{mark.name} "
        return f"YAML syntax error in {where}line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    if isinstance(exc, FileNotFoundError) and exc.filename is not None:
        return f"{exc.strerror or 'not found'}: {exc.filename}"
    return " ".join(str(exc).split()) or type(exc).__name__


def _metavar(tp: Any) -> str:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else tp
    if get_origin(tp) is Literal:
        return "{" + ",".join(str(a) for a in get_args(tp)) + "}"
    return str(getattr(tp, "__name__", "VALUE")).upper()


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
