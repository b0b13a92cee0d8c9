"""Fill the `${TDN_...}` placeholders of the deployment templates from environment variables.

    export TDN_IMAGE=123456789012.dkr.ecr.us-west-2.amazonaws.com/tdn-pipeline:0.1.0 TDN_REGION=us-west-2 ...
    python -m infra.render infra/aws/cluster.yaml > cluster.yaml
    python -m infra.render --out-dir build/k8s infra/k8s/*.yaml infra/mlflow/k8s/*.yaml

Only `${TDN_[A-Z0-9_]+}` is replaced; other `$X` / `${X}` (shell variables in start commands) stay as they are.
A placeholder with no value is an error that names it, never an empty string in a manifest.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

PLACEHOLDER = re.compile(r"\$\{(TDN_[A-Z0-9_]+)\}")


class MissingValueError(ValueError):
    """A template uses placeholders that have no value."""


def placeholders(text: str) -> set[str]:
    """Names of the `${TDN_...}` placeholders in `text`."""
    return set(PLACEHOLDER.findall(text))


def derived_values(values: Mapping[str, str]) -> dict[str, str]:
    """`values` plus what follows from them: the registry host of TDN_IMAGE (for `docker login`)."""
    out = dict(values)
    if "TDN_IMAGE" in out and "TDN_ECR_REGISTRY" not in out:
        out["TDN_ECR_REGISTRY"] = out["TDN_IMAGE"].split("/", 1)[0]
    return out


def render(text: str, values: Mapping[str, str], source: str = "<template>") -> str:
    """Replace every placeholder in `text`; raise MissingValueError naming those without a value."""
    full = derived_values(values)
    missing = sorted(name for name in placeholders(text) if not full.get(name))
    if missing:
        raise MissingValueError(
            f"{source}: no value for {', '.join(missing)} (set them as environment variables)"
        )
    return PLACEHOLDER.sub(lambda m: full[m.group(1)], text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.render", description=__doc__.splitlines()[0])
    parser.add_argument("templates", nargs="+", type=Path)
    parser.add_argument("--out-dir", type=Path, help="write each rendered file here (default: stdout)")
    args = parser.parse_args(argv)
    values = {k: v for k, v in os.environ.items() if k.startswith("TDN_")}
    try:
        rendered = [(path, render(path.read_text(), values, str(path))) for path in args.templates]
    except MissingValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.out_dir is None:
        sys.stdout.write("---\n".join(text for _, text in rendered))
        return 0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path, text in rendered:
        (args.out_dir / path.name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
