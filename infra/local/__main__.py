"""CLI: `python -m infra.local up|down|env [--dir .local-cluster]`.

python -m infra.local up                  # start; prints the env file to source
source .local-cluster/env.sh              # RAY_ADDRESS, MLFLOW_TRACKING_URI, AWS_ENDPOINT_URL, ...
ray job submit --working-dir . -- python -m jobs.shard --config jobs/configs/...
python -m infra.local down                # stops exactly what `up` started
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infra.local.cluster import ENV_FILE, ClusterStartError, LocalClusterConfig, down, up


def main(argv: list[str] | None = None) -> int:
    defaults = LocalClusterConfig()
    parser = argparse.ArgumentParser(prog="python -m infra.local", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "env"])
    parser.add_argument("--dir", default=defaults.dir, help="state, logs and env.sh go here")
    parser.add_argument("--head-cpus", type=int, default=defaults.head_cpus)
    parser.add_argument("--worker-cpus", type=int, default=defaults.worker_cpus)
    parser.add_argument("--object-store-mib", type=int, default=defaults.object_store_mib)
    parser.add_argument("--bucket", default=defaults.bucket)
    parser.add_argument("--region", default=defaults.region)
    parser.add_argument("--startup-timeout-s", type=float, default=defaults.startup_timeout_s)
    parser.add_argument(
        "--project-dir", default=defaults.project_dir, help="working directory of the Ray nodes"
    )
    args = parser.parse_args(argv)

    if args.command == "up":
        cfg = LocalClusterConfig(
            dir=args.dir,
            head_cpus=args.head_cpus,
            worker_cpus=args.worker_cpus,
            object_store_mib=args.object_store_mib,
            bucket=args.bucket,
            region=args.region,
            startup_timeout_s=args.startup_timeout_s,
            project_dir=args.project_dir,
        )
        try:
            state = up(cfg)
        except ClusterStartError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(
            f"local cluster up; services: {', '.join(f'{n} (pid {s.pid})' for n, s in state.services.items())}"
        )
        print(f"source {Path(state.dir) / ENV_FILE}")
        return 0
    if args.command == "down":
        stopped = down(args.dir)
        print(f"stopped {len(stopped)} services" if stopped else f"nothing recorded in {args.dir}")
        return 0
    env_path = Path(args.dir) / ENV_FILE
    if not env_path.exists():
        print(f"error: no running local cluster in {args.dir} (no {ENV_FILE})", file=sys.stderr)
        return 1
    sys.stdout.write(env_path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
