"""The measured unit costs a capacity plan multiplies out: one typed record, benchmarks/unit_costs.json.

    benchmarks/shard_throughput.py --write-unit-costs   -> shard: ShardCost per source resolution
    benchmarks/scale.py                                 -> overhead: PipelineOverhead (per video, at scale)
    benchmarks/loader_throughput.py --write-unit-costs  -> loader: LoaderCost per decode path and input size
    benchmarks/record_train_throughput.py RESULTS_JSON -> gpu: GpuThroughput per GPU type (train clips/s of
                                                           the real loop, eval views/s) and the device path's
                                                           LoaderCost (benchmarks/train_throughput.py --out);
                                                           until measured: an ASSUMPTION (measured False)

Every figure carries its ``Source`` (command, date, machine, caveats) so a plan can name where each number
came from. A benchmark replaces only its own entries (same key) and keeps the rest (``UnitCosts.merged``).
Reading rejects unknown and missing fields (``ContractError``, a user-input error: the jobs exit 2).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, fields, replace
from datetime import date
from pathlib import Path
from typing import Any, Literal, Self

from pipeline.shards.contract import ContractError, Record

SCHEMA = "tdn-unit-costs/1"
DEFAULT_PATH = Path(__file__).resolve().parent.parent.parent / "benchmarks" / "unit_costs.json"


def _list(cls: type[Record], items: object, source: str) -> tuple[Any, ...]:
    if not isinstance(items, list):
        raise ContractError(f"{source}: expected a list of {cls.__name__}, got {type(items).__name__}")
    return tuple(cls.from_dict(item, f"{source}[{i}]") for i, item in enumerate(items))


@dataclass(frozen=True)
class Source(Record):
    """Where a figure came from."""

    command: str  # the command that measured it (or, for an assumption, what it is derived from)
    date: str  # ISO date of the measurement
    machine: str  # the machine that ran it (CPU, cores, accelerator) and how loaded it was
    note: str  # caveats: shared noisy machine, small sample, how an assumption was derived
    measured: bool  # False: an ASSUMPTION, not a measurement; printed as such wherever it is used

    @classmethod
    def from_dict(cls, data: object, source: str) -> Self:
        return cls(**_checked_dict(cls, data, source))

    def label(self) -> str:
        """One line for a plan: 'measured <date>: <command>' or 'ASSUMPTION: <note>'."""
        return f"measured {self.date}: {self.command}" if self.measured else f"ASSUMPTION: {self.note}"


def here(command: str, note: str, accelerator: str = "no accelerator") -> Source:
    """A Source for a measurement taken now on this machine."""
    machine = (
        f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {accelerator}"
    )
    return Source(command=command, date=date.today().isoformat(), machine=machine, note=note, measured=True)


class Measured(Record):
    """A record of figures with their ``source: Source`` (checked and read back as a nested record)."""

    @classmethod
    def from_dict(cls, data: object, source: str) -> Self:
        return cls(**_with_source(_checked_dict(cls, data, source), source))


@dataclass(frozen=True)
class ShardCost(Measured):
    """The shard job's CPU and bytes per frame, for one source resolution (one core, CPU time)."""

    source_width: int  # source video width, pixels
    source_height: int  # source video height, pixels
    codec: str  # source codec (h264, mpeg4, vp9)
    stored_short_side: int  # shorter side of the stored JPEGs
    jpeg_quality: int  # JPEG quality of the stored frames
    cpu_s_per_decoded_frame: float  # CPU-seconds per source frame decoded (the decode floor / frames decoded)
    cpu_s_per_stored_jpeg: (
        float  # CPU-seconds per stored JPEG beyond decoding: resize, encode, sample packing
    )
    bytes_per_stored_jpeg: float  # mean bytes of one stored JPEG (tar bytes / stored frames)
    source: Source


@dataclass(frozen=True)
class PipelineOverhead(Measured):
    """What the shard job costs per video beyond decoding and encoding (Ray task, tar, index, driver)."""

    shard_cpu_s_per_video: float  # CPU-seconds per video of the whole job minus the per-frame work
    index_bytes_per_video: float  # bytes of index.json + sidecars per video
    source: Source


@dataclass(frozen=True)
class LoaderCost(Measured):
    """Training loader throughput per host core for one decode path."""

    decode: Literal["cpu", "device"]  # LoaderConfig.decode: JPEGs decoded by CPU workers or on the GPU
    input_size: int  # training crop side, pixels
    clips_per_core_s: float  # training clips (T x 5 frames) per host CPU-second, loader workers
    source: Source

    @classmethod
    def from_dict(cls, data: object, source: str) -> Self:
        d = _checked_dict(cls, data, source)
        if d["decode"] not in ("cpu", "device"):
            raise ContractError(
                f"{source}: LoaderCost: decode must be 'cpu' or 'device', got {d['decode']!r}"
            )
        return cls(**_with_source(d, source))


@dataclass(frozen=True)
class GpuThroughput(Measured):
    """Training and evaluation throughput of one GPU type for the reference model."""

    gpu_type: str  # e.g. "H100", "H200"
    model: str  # the model and input it was measured with, e.g. "TDN-R50 8f 224^2 bf16 channels_last"
    train_clips_per_s: float  # training clips (forward + backward) per second per GPU
    eval_views_per_s: float  # evaluation views (one clip, one crop, forward only) per second per GPU
    source: Source


@dataclass(frozen=True)
class UnitCosts(Record):
    """Everything a capacity plan multiplies out (module docstring)."""

    schema: str  # SCHEMA
    shard: tuple[ShardCost, ...]  # one per source resolution / codec
    overhead: PipelineOverhead
    loader: tuple[LoaderCost, ...]  # one per (decode, input_size)
    gpu: tuple[GpuThroughput, ...]  # one per GPU type

    @classmethod
    def from_dict(cls, data: object, source: str) -> Self:
        d = _checked_dict(cls, data, source)
        if d["schema"] != SCHEMA:
            raise ContractError(f"{source}: schema {d['schema']!r}, expected {SCHEMA!r}")
        return cls(
            schema=d["schema"],
            shard=_list(ShardCost, d["shard"], f"{source}.shard"),
            overhead=PipelineOverhead.from_dict(d["overhead"], f"{source}.overhead"),
            loader=_list(LoaderCost, d["loader"], f"{source}.loader"),
            gpu=_list(GpuThroughput, d["gpu"], f"{source}.gpu"),
        )

    def merged(
        self,
        *,
        shard: ShardCost | None = None,
        overhead: PipelineOverhead | None = None,
        loader: LoaderCost | None = None,
        gpu: GpuThroughput | None = None,
    ) -> UnitCosts:
        """A copy with the given entries replacing those of the same key (a benchmark writes its own part)."""
        out = self
        if shard is not None:
            key = (shard.source_width, shard.source_height, shard.codec, shard.stored_short_side)
            kept = [
                s for s in out.shard if (s.source_width, s.source_height, s.codec, s.stored_short_side) != key
            ]
            out = replace(
                out, shard=tuple(sorted([*kept, shard], key=lambda s: s.source_width * s.source_height))
            )
        if overhead is not None:
            out = replace(out, overhead=overhead)
        if loader is not None:
            kept_l = [c for c in out.loader if (c.decode, c.input_size) != (loader.decode, loader.input_size)]
            out = replace(
                out, loader=tuple(sorted([*kept_l, loader], key=lambda c: (c.decode, c.input_size)))
            )
        if gpu is not None:
            out = replace(
                out,
                gpu=tuple(
                    sorted(
                        [*(g for g in out.gpu if g.gpu_type != gpu.gpu_type), gpu], key=lambda g: g.gpu_type
                    )
                ),
            )
        return out


_SCALARS: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def _checked_dict(cls: type, data: object, source: str) -> dict[str, Any]:
    """``data`` with exactly the fields of ``cls``, scalars of their declared type; else ContractError."""
    if not isinstance(data, dict):
        raise ContractError(f"{source}: {cls.__name__} must be a JSON object, got {type(data).__name__}")
    declared = {f.name: str(f.type) for f in fields(cls)}
    problems = [f"unknown field {n!r}" for n in sorted(set(data) - set(declared))]
    problems += [f"missing field {n!r}" for n in sorted(set(declared) - set(data))]
    for name, value in data.items():
        types = _SCALARS.get(declared.get(name, ""))
        if types and (not isinstance(value, types) or (bool not in types and isinstance(value, bool))):
            problems.append(f"field {name!r} must be {declared[name]}, got {value!r}")
    if problems:
        raise ContractError(f"{source}: {cls.__name__}: {', '.join(problems)}")
    return dict(data)


def _with_source(d: dict[str, Any], source: str) -> dict[str, Any]:
    return {**d, "source": Source.from_dict(d["source"], f"{source}.source")}


def load_unit_costs(path: Path = DEFAULT_PATH) -> UnitCosts:
    """Read and check a unit-costs file; ContractError (one line naming file and field) when it is wrong."""
    return UnitCosts.from_json(Path(path).read_text(encoding="utf-8"), str(path))


def save_unit_costs(costs: UnitCosts, path: Path = DEFAULT_PATH) -> None:
    Path(path).write_text(costs.to_json(indent=2) + "\n", encoding="utf-8")


def update_unit_costs(
    path: Path = DEFAULT_PATH,
    *,
    shard: ShardCost | None = None,
    overhead: PipelineOverhead | None = None,
    loader: LoaderCost | None = None,
    gpu: GpuThroughput | None = None,
) -> UnitCosts:
    """Replace a benchmark's own entries in the file at ``path`` (``UnitCosts.merged``) and save."""
    costs = load_unit_costs(path).merged(shard=shard, overhead=overhead, loader=loader, gpu=gpu)
    save_unit_costs(costs, path)
    return costs
