"""Typed configuration: dataclasses loaded from YAML presets and overridden by dotted command-line flags.

Each component owns its own dataclass (``ShardConfig``, ``ModelConfig``, ``TrainConfig``...). A job's config is
a dataclass whose fields may themselves be dataclasses; this module only converts between YAML / flags / dicts
and those dataclasses, rejecting unknown keys by name so a typo never silently falls back to a default.

    cfg = load_config(TrainConfig, "jobs/configs/k400_r50_8f.yaml", ["optim.lr=0.01"])

The command line of the jobs (``--config``, ``--optim.lr 0.01``, shortcuts) is built on this in jobs/cli.py.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from pipeline.errors import InputError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")  # a config class: a dataclass type


class ConfigError(InputError):
    """A configuration file or flag that does not fit the dataclass it is loaded into."""


def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) < len(get_args(tp)) and len(args) == 1:
            return True, args[0]
    return False, tp


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/flag value to the annotated type, with an error that names the key."""
    optional, inner = _is_optional(tp)
    if value is None:
        if optional or tp is Any:
            return None
        raise ConfigError(f"{where}: null is not allowed (expected {tp})")
    tp = inner
    origin = get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a nested section (an annotation is a class)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return _from_mapping(tp, value, where)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        args = get_args(tp)
        key_tp, val_tp = args if args else (Any, Any)
        return {
            _convert(k, key_tp, f"{where}.{k}"): _convert(v, val_tp, f"{where}.{k}") for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from exc
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from exc
        if not math.isfinite(number):  # `lr <= 0` is false for NaN: nothing later would catch it
            raise ConfigError(f"{where}: {value!r} is not a finite number")
        return number
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _reject_moved_keys(cls: type, data: Mapping[str, Any], where: str) -> None:
    """A config class lists the dotted keys it no longer has and their new place in ``MOVED_KEYS``
    (a ClassVar): an old preset then fails naming the new key rather than with a bare 'unknown key'."""
    prefix = f"{where}." if where else ""
    for old, new in getattr(cls, "MOVED_KEYS", {}).items():
        node: Any = data
        for part in old.split("."):
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            raise ConfigError(f"{prefix}{old} has moved to {prefix}{new}; rename it there")


def _from_mapping(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    _reject_moved_keys(cls, data, where)
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]!s} for {cls.__name__}; known keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        path = f"{where}.{name}" if where else name
        kwargs[name] = _convert(value, hints[name], path)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if where and str(exc).startswith(f"{where}."):  # it names its key already ("run.workers must be ...")
            raise ConfigError(str(exc)) from exc
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def config_from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build ``cls`` from a nested mapping; unknown keys raise ConfigError naming the dotted key."""
    return _from_mapping(cls, data)


def config_to_dict(obj: Any) -> dict[str, Any]:
    """Nested plain-Python dict (tuples become lists) for YAML, MLflow params, checkpoints and Ray workers."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(obj)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'optim': {'lr': 0.1}} -> {'optim.lr': 0.1}; used for MLflow params."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def _read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with path.open(encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """YAML preset (optional) + ``key.sub=value`` overrides -> dataclass ``cls``."""
    data: dict[str, Any] = _read_yaml(path) if path else {}
    given: set[str] = set()  # keys set by the overrides (command-line flags), not by the preset
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        _set_dotted(data, key.strip(), yaml.safe_load(raw) if raw != "" else "")
        given.add(key.strip())
    try:
        return _from_mapping(cls, data)
    except ConfigError as exc:
        # "optim.lr: ...", "optim.steps[1]: ..." or "run.name 'x': ...": blame the preset only for a key it set
        found = re.match(r"[A-Za-z_][\w.]*", str(exc))
        key = found.group(0) if found else ""
        if path and not any(key == k or key.startswith(k + ".") for k in given):
            raise ConfigError(f"{exc} (in {path})") from exc
        raise


def leaf_fields(cls: type, prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted names and types of the leaf fields of ``cls``, sections flattened (jobs/cli.py: a flag each)."""
    out: list[tuple[str, Any]] = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        _, inner = _is_optional(tp)
        name = f"{prefix}{f.name}"
        if isinstance(inner, type) and dataclasses.is_dataclass(inner):
            out.extend(leaf_fields(inner, f"{name}."))
        else:
            out.append((name, tp))
    return out


def section_class(cls: type, name: str) -> type | None:
    """The dataclass of field ``name`` of ``cls`` when it is a section (``Optional`` unwrapped), else None."""
    _, inner = _is_optional(_hints(cls)[name])
    return inner if isinstance(inner, type) and dataclasses.is_dataclass(inner) else None


def save_config(obj: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(obj), sort_keys=False), encoding="utf-8")


def require_finite(section: Any, name: str) -> None:
    """ConfigError naming ``<name>.<field>`` for a float field that is NaN or infinite (for configs built in
    code; values read from YAML or flags are checked as they are read)."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name}.{f.name}: {value!r} is not a finite number")
