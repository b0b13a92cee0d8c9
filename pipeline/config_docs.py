"""What each config field means, for ``--help``: its description, default and whether only tests set it.

The description is read from the source of the config dataclass, so the comment a reader sees beside a field
is the help a user sees (one mechanism, no second copy to keep in step):

    @dataclass
    class RunConfig:
        TEST_ONLY: ClassVar[frozenset[str]] = frozenset({"crash_marker"})  # hidden from --help
        workers: int = 1  # number of DDP workers              <- the trailing comment of the field's line
        # How long the launcher waits for the cluster          <- else the comment lines right above it
        # to offer the workers.
        resources_timeout_s: float = 60.0

    describe_fields(TrainConfig) -> [FieldDoc(name="run.workers", type=int, default=1,
                                              help="number of DDP workers", test_only=False), ...]

Pragmas in a comment (``# noqa``, ``# type: ignore``, ``# pragma``) are not part of the description.
``TEST_ONLY`` (a ClassVar of the dataclass) names the fields that exist for fault injection in tests: jobs/cli.py
still accepts them as flags but does not list them.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import re
import textwrap
import tokenize
from dataclasses import dataclass
from typing import Any

from pipeline.config import leaf_fields, section_class

_PRAGMA = re.compile(r"\s*#?\s*(noqa\b.*|type:\s*ignore\b.*|pragma\b.*)$")


@dataclass(frozen=True)
class FieldDoc:
    """One leaf field of a config class, as ``--help`` shows it."""

    name: str  # dotted key, e.g. "optim.lr"
    type: Any  # its annotation
    default: Any  # the value a config built from no YAML and no flags has
    help: str  # one-line description from the source ("" when the field has none)
    test_only: bool  # listed in the TEST_ONLY ClassVar of its dataclass: hidden from --help


def describe_fields(cls: type) -> list[FieldDoc]:
    """The leaf fields of config class ``cls`` (sections flattened, as ``leaf_fields``) with their docs."""
    defaults = _leaf_defaults(cls)
    docs: list[FieldDoc] = []
    for name, tp in leaf_fields(cls):
        owner, leaf = _owner(cls, name)
        docs.append(
            FieldDoc(
                name=name,
                type=tp,
                default=defaults.get(name),
                help=field_comments(owner).get(leaf, ""),
                test_only=leaf in getattr(owner, "TEST_ONLY", frozenset()),
            )
        )
    return docs


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """Field name -> its comment in the source of ``cls`` and of its dataclass bases (cached per class)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is not object and dataclasses.is_dataclass(
            klass
        ):  # a subclass's comment wins, if it has one
            out.update({name: text for name, text in _own_comments(klass).items() if text or name not in out})
    return out


def _own_comments(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # defined in a REPL or generated: no source, no descriptions
        return {}
    comments: dict[int, str] = {}  # line number -> comment text
    code_lines: set[int] = set()  # lines holding code (a comment there is a trailing one)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = _PRAGMA.sub("", tok.string.lstrip("#")).strip()
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            code_lines.update(range(tok.start[0], tok.end[0] + 1))
    node = ast.parse(source).body[0]
    out: dict[str, str] = {}
    if not isinstance(node, ast.ClassDef):
        return out
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        end = stmt.end_lineno or stmt.lineno
        trailing = [comments[n] for n in range(stmt.lineno, end + 1) if n in comments and comments[n]]
        if trailing:
            out[stmt.target.id] = trailing[0]
            continue
        above: list[str] = []
        line = stmt.lineno - 1
        while line in comments and line not in code_lines:
            above.insert(0, comments[line])
            line -= 1
        out[stmt.target.id] = " ".join(c for c in above if c)
    return out


def _owner(cls: type, dotted: str) -> tuple[type, str]:
    """The dataclass that declares the leaf ``dotted`` and the leaf's own name."""
    *sections, leaf = dotted.split(".")
    owner = cls
    for part in sections:
        section = section_class(owner, part)
        assert section is not None, f"{dotted}: {part} is not a section of {owner.__name__}"
        owner = section
    return owner, leaf


def _leaf_defaults(cls: type) -> dict[str, Any]:
    """Dotted key -> default value, reading each field's default (or calling its factory)."""
    out: dict[str, Any] = {}

    def walk(klass: type, prefix: str) -> None:
        for f in dataclasses.fields(klass):
            if not f.init:
                continue
            name = f"{prefix}{f.name}"
            if f.default is not dataclasses.MISSING:
                value: Any = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = None  # a required field: no default to show
            section = section_class(klass, f.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                out.update({f"{name}.{k}": v for k, v in _values(value).items()})
            elif value is None and section is not None:  # an optional section, unset: its fields' defaults
                walk(section, f"{name}.")
            else:
                out[name] = value

    walk(cls, "")
    return out


def _values(obj: Any) -> dict[str, Any]:
    """Leaf values of a dataclass instance, keyed by dotted name relative to it."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update({f"{f.name}.{k}": v for k, v in _values(value).items()})
        else:
            out[f.name] = value
    return out
