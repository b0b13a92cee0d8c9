"""A development cluster on one machine: Ray head + second Ray node, MLflow server, moto S3, all on 127.0.0.1.

`up(cfg)` starts the services, each in its own session, writes `<dir>/env.sh` (what a client exports to use
them) and `<dir>/state.json` (pids, ports, env); `down(dir)` stops exactly the sessions recorded there.
Nothing here calls `ray stop`, which would stop every Ray on the machine, other people's clusters included.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from infra.local.processes import (
    free_ports,
    is_alive,
    kill_sessions,
    log_tail,
    session_members,
    spawn_detached,
    stop_session,
    wait_until,
)
from infra.mlflow.command import MlflowServerCommand

STATE_FILE = "state.json"
ENV_FILE = "env.sh"
# Unix socket paths are limited to 107 bytes and Ray puts its sockets under <temp>/session_<date>_<pid>/sockets.
_MAX_RAY_TEMP_DIR_LEN = 40
# moto accepts any credentials; this placeholder is what boto3/pyarrow send to it (real AWS never sees it).
_MOTO_CREDENTIAL = "testing"
# The checkout this module lives in: Ray nodes run from here, so `python -m jobs.x` resolves without
# --working-dir, the same way the cluster image runs from its WORKDIR.
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LocalClusterConfig:
    dir: str = ".local-cluster"
    head_cpus: int = 2
    worker_cpus: int = 2
    object_store_mib: int = 256  # per node; Ray's minimum is 75 MiB
    bucket: str = "tdn-local"
    region: str = "us-east-1"
    startup_timeout_s: float = 180.0
    project_dir: str = str(
        REPO_ROOT
    )  # working directory of the Ray nodes (and of jobs without a working_dir)


@dataclass
class ServiceState:
    pid: int
    log: str


@dataclass
class ClusterState:
    dir: str
    ray_temp_dir: str
    ray_temp_dir_owned: bool  # created by us under /tmp because `dir` was too long for Ray's sockets
    ports: dict[str, int]
    env: dict[str, str]
    services: dict[str, ServiceState] = field(default_factory=dict)

    def save(self) -> None:
        path = Path(self.dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        tmp.replace(path)

    @staticmethod
    def load(directory: str | Path) -> ClusterState:
        path = Path(directory) / STATE_FILE
        raw = json.loads(path.read_text())
        raw["services"] = {name: ServiceState(**s) for name, s in raw["services"].items()}
        return ClusterState(**raw)


class ClusterStartError(RuntimeError):
    """A service did not come up; the message names it and quotes the end of its log.

    `stopped_sessions` lists the session ids of what had been started and was stopped again.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.stopped_sessions: list[int] = []


def _http_ok(url: str, timeout_s: float = 2.0) -> bytes | None:
    """Body of a 200 answer from `url`, or None if it does not answer (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.read() if resp.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def cluster_env(ports: dict[str, int], cfg: LocalClusterConfig) -> dict[str, str]:
    """The variables a client (and every job on the cluster) needs to use the local services."""
    s3 = f"http://127.0.0.1:{ports['s3']}"
    return {
        # `ray job submit` and JobSubmissionClient talk to the dashboard's HTTP API.
        "RAY_ADDRESS": f"http://127.0.0.1:{ports['dashboard']}",
        "RAY_AUTH_MODE": "disabled",
        # ray.init(address=...) wants the GCS address, not the dashboard.
        "TDN_RAY_GCS_ADDRESS": f"127.0.0.1:{ports['gcs']}",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
        "AWS_ENDPOINT_URL": s3,
        "MLFLOW_S3_ENDPOINT_URL": s3,
        "AWS_ACCESS_KEY_ID": _MOTO_CREDENTIAL,
        "AWS_SECRET_ACCESS_KEY": _MOTO_CREDENTIAL,
        "AWS_DEFAULT_REGION": cfg.region,
        "AWS_REGION": cfg.region,
        "TDN_BUCKET": cfg.bucket,
    }


def write_env_file(directory: Path, env: dict[str, str]) -> Path:
    path = directory / ENV_FILE
    body = "# Written by `python -m infra.local up`; use with: source " + str(path) + "\n"
    body += "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))
    path.write_text(body)
    return path


def _service_env(env: dict[str, str]) -> dict[str, str]:
    out = dict(os.environ)
    # A client-side RAY_ADDRESS would make `ray start --head` try to join it instead of starting a head.
    out.pop("RAY_ADDRESS", None)
    out.update(env)
    out.pop("RAY_ADDRESS", None)
    out.update(
        {
            "RAY_USAGE_STATS_ENABLED": "0",
            # Skip the node drain on SIGTERM (made for Serve upgrades): `down` should take seconds.
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    # Job entrypoints say `python ...`: make that the interpreter running this cluster (like the image's).
    out["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), out.get("PATH", "")])
    return out


def _ray_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "ray.scripts.scripts", *args]


def _node_port_flags(ports: dict[str, int], node: str) -> list[str]:
    return [
        "--dashboard-agent-listen-port",
        str(ports[f"{node}_agent"]),
        "--dashboard-agent-grpc-port",
        str(ports[f"{node}_agent_grpc"]),
        "--metrics-export-port",
        str(ports[f"{node}_metrics"]),
        "--runtime-env-agent-port",
        str(ports[f"{node}_runtime_env_agent"]),
        "--node-manager-port",
        str(ports[f"{node}_node_manager"]),
        "--object-manager-port",
        str(ports[f"{node}_object_manager"]),
    ]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive_nodes(dashboard_port: int) -> int:
    body = _http_ok(f"http://127.0.0.1:{dashboard_port}/api/v0/nodes?limit=100&detail=false")
    if body is None:
        return 0
    try:
        rows = json.loads(body)["data"]["result"]["result"]
    except (KeyError, TypeError, ValueError):
        return 0
    return sum(1 for row in rows if row.get("state") == "ALIVE")


def _s3_ready(endpoint: str, bucket: str, region: str) -> bool:
    import boto3
    import botocore.exceptions

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=_MOTO_CREDENTIAL,
        aws_secret_access_key=_MOTO_CREDENTIAL,
    )
    try:
        client.list_buckets()
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError):
        return False
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        kwargs = (
            {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        )
        try:
            client.create_bucket(Bucket=bucket, **kwargs)
        except (botocore.exceptions.ClientError, botocore.exceptions.ParamValidationError) as e:
            raise ClusterStartError(f"cannot create bucket {bucket!r} on the local S3 endpoint: {e}") from e
    return True


def _running_services(state: ClusterState) -> list[str]:
    return [name for name, s in state.services.items() if session_members([s.pid])]


def up(cfg: LocalClusterConfig) -> ClusterState:
    """Start the four services, wait until each answers, write env.sh and state.json; return the state.

    On any failure everything started so far is stopped again and ClusterStartError says which service failed.
    """
    directory = Path(cfg.dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / STATE_FILE).exists():
        old = ClusterState.load(directory)
        running = _running_services(old)
        if running:
            raise ClusterStartError(
                f"a local cluster from {directory} is still running ({', '.join(running)}): "
                f"run `python -m infra.local down --dir {cfg.dir}` first"
            )
        _cleanup_files(old)

    ray_temp = directory / "ray"
    owned = len(str(ray_temp)) > _MAX_RAY_TEMP_DIR_LEN
    if owned:
        ray_temp = Path(tempfile.mkdtemp(prefix="tdn-ray-", dir="/tmp"))
    ray_temp.mkdir(parents=True, exist_ok=True)

    # Every port Ray would otherwise take from a fixed default: another cluster on this machine may hold it
    # (a dashboard agent that cannot bind its port makes job submission answer "No available agent").
    node_ports = ["agent", "agent_grpc", "metrics", "runtime_env_agent", "node_manager", "object_manager"]
    names = ["s3", "mlflow", "gcs", "dashboard", "client_server"]
    names += [f"{node}_{port}" for node in ("head", "worker") for port in node_ports]
    ports = dict(zip(names, free_ports(len(names))))
    env = cluster_env(ports, cfg)
    state = ClusterState(
        dir=str(directory), ray_temp_dir=str(ray_temp), ray_temp_dir_owned=owned, ports=ports, env=env
    )
    state.save()
    logs = directory / "logs"
    service_env = _service_env(env)
    object_store = str(cfg.object_store_mib * 1024 * 1024)

    def start(name: str, argv: list[str], cwd: Path = directory, env: dict[str, str] = service_env) -> None:
        log = logs / f"{name}.log"
        state.services[name] = ServiceState(pid=spawn_detached(argv, log, env, cwd), log=str(log))
        state.save()

    def wait_for(name: str, ready, what: str) -> None:
        deadline = time.monotonic() + cfg.startup_timeout_s

        def check() -> bool:
            # Every service started so far, not only the awaited one: a head that dies while the worker is
            # trying to join it should fail `up` now, not after the worker's timeout.
            for other, service in state.services.items():
                if not is_alive(service.pid):
                    raise ClusterStartError(f"{other} exited during start-up:\n{log_tail(service.log)}")
            return bool(ready())

        if not wait_until(check, max(0.0, deadline - time.monotonic()), interval_s=0.3):
            raise ClusterStartError(
                f"{name} did not {what} within {cfg.startup_timeout_s} s:\n{log_tail(state.services[name].log)}"
            )

    try:
        start("s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(ports["s3"])])
        wait_for("s3", lambda: _s3_ready(env["AWS_ENDPOINT_URL"], cfg.bucket, cfg.region), "answer S3 calls")
        # MLflow and Ray start concurrently: each takes several seconds of mostly waiting.
        mlflow = MlflowServerCommand(
            port=ports["mlflow"],
            backend_store_uri=f"sqlite:///{directory / 'mlflow.db'}",
            artifacts_destination=f"s3://{cfg.bucket}/mlflow-artifacts",
        )
        start("mlflow", mlflow.argv(), env=mlflow.env(service_env))
        start(
            "ray-head",
            _ray_argv(
                "start",
                "--head",
                "--block",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(ports["gcs"]),
                "--dashboard-host",
                "127.0.0.1",
                "--dashboard-port",
                str(ports["dashboard"]),
                "--include-dashboard",
                "true",
                "--ray-client-server-port",
                str(ports["client_server"]),
                *_node_port_flags(ports, "head"),
                "--num-cpus",
                str(cfg.head_cpus),
                "--num-gpus",
                "0",
                "--object-store-memory",
                object_store,
                "--temp-dir",
                str(ray_temp),
                "--disable-usage-stats",
            ),
            cwd=Path(cfg.project_dir),
        )
        wait_for("ray-head", lambda: _http_ok(f"{env['RAY_ADDRESS']}/api/version"), "serve its dashboard")
        # Jobs are submitted through the head's dashboard agent: ready only once it listens.
        wait_for("ray-head", lambda: _port_open(ports["head_agent"]), "start its job agent")
        start(
            "ray-worker",
            _ray_argv(
                "start",
                "--block",
                "--address",
                env["TDN_RAY_GCS_ADDRESS"],
                "--node-ip-address",
                "127.0.0.1",
                *_node_port_flags(ports, "worker"),
                "--num-cpus",
                str(cfg.worker_cpus),
                "--num-gpus",
                "0",
                "--object-store-memory",
                object_store,
                "--temp-dir",
                str(ray_temp),
                "--disable-usage-stats",
            ),
            cwd=Path(cfg.project_dir),
        )
        wait_for("ray-worker", lambda: _alive_nodes(ports["dashboard"]) >= 2, "join the head")
        wait_for("mlflow", lambda: _http_ok(f"{env['MLFLOW_TRACKING_URI']}/health"), "answer /health")
    except BaseException as error:
        stopped = down(directory)
        if isinstance(error, ClusterStartError):
            error.stopped_sessions = stopped
        raise
    write_env_file(directory, env)
    return state


def _cleanup_files(state: ClusterState) -> None:
    if state.ray_temp_dir_owned:
        shutil.rmtree(state.ray_temp_dir, ignore_errors=True)
    for name in (STATE_FILE, ENV_FILE):
        (Path(state.dir) / name).unlink(missing_ok=True)


def down(directory: str | Path) -> list[int]:
    """Stop every service recorded in `<directory>/state.json`, newest first; returns the session ids stopped.

    Data (mlflow.db, the service logs, and Ray's session logs when they are under `directory`) stays for
    inspection; a fresh `up` reuses the MLflow database.
    """
    directory = Path(directory).resolve()
    if not (directory / STATE_FILE).exists():
        return []
    state = ClusterState.load(directory)
    leaders = [s.pid for s in state.services.values()]
    # Worker node before head, so the head does not wait on a node that is going away anyway.
    for service in reversed(list(state.services.values())):
        stop_session(service.pid)
    kill_sessions(leaders)
    _cleanup_files(state)
    return leaders


def leftover_processes(leaders: list[int]) -> list[int]:
    """Pids still alive in the sessions of `leaders` (empty after a clean `down`)."""
    return session_members(leaders)


def read_env(directory: str | Path) -> dict[str, str]:
    """The environment of a running local cluster, from its state file."""
    return ClusterState.load(directory).env
