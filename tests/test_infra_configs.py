"""Deployment assets checked against each other, against the schema Ray ships, and for secrets.

Fast (no services): the Dockerfile's Ray against the clients' pin, the AWS launcher config against
ray-schema.json and Ray's own validate/prepare, the KubeRay and MLflow manifests' cross-references and resource
figures, the template renderer, the MLflow server command and auth file, and a scan for anything that looks
like a credential.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from infra.render import MissingValueError, placeholders, render

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
K8S_FILES = sorted((INFRA / "k8s").glob("*.yaml"))
MLFLOW_K8S_FILES = sorted((INFRA / "mlflow" / "k8s").glob("*.yaml"))

# Values for every placeholder, shaped like real ones (the account id is AWS's documentation example).
VALUES = {
    "TDN_IMAGE": "111122223333.dkr.ecr.us-west-2.amazonaws.com/tdn-pipeline:0.1.0",
    "TDN_MLFLOW_IMAGE": "111122223333.dkr.ecr.us-west-2.amazonaws.com/tdn-mlflow:3.17.2",
    "TDN_REGION": "us-west-2",
    "TDN_BUCKET": "tdn-example-bucket",
    "TDN_AMI_ID": "ami-0123456789abcdef0",
    "TDN_HEAD_INSTANCE_PROFILE_ARN": "arn:aws:iam::111122223333:instance-profile/tdn-ray-head",
    "TDN_WORKER_INSTANCE_PROFILE_ARN": "arn:aws:iam::111122223333:instance-profile/tdn-ray-worker",
    "TDN_IRSA_ROLE_ARN": "arn:aws:iam::111122223333:role/tdn-eks-s3",
    "TDN_MLFLOW_HOST": "mlflow.example.com",
    "TDN_MLFLOW_URI": "https://mlflow.example.com",
    "TDN_CERT_ARN": "arn:aws:acm:us-west-2:111122223333:certificate/00000000-0000-0000-0000-000000000000",
}


def ray_pin() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [re.fullmatch(r"ray(\[[^\]]*\])?==([0-9.]+)", d.replace(" ", "")) for d in deps]
    found = [m.group(2) for m in pins if m]
    assert len(found) == 1, f"expected exactly one exact ray pin in pyproject.toml, got {deps}"
    return found[0]


def load_rendered(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(render(path.read_text(), VALUES, str(path))) if d is not None]


def all_k8s_docs() -> list[dict]:
    return [doc for path in K8S_FILES + MLFLOW_K8S_FILES for doc in load_rendered(path)]


def find(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def pod_specs(doc: dict) -> list[dict]:
    """Every pod template spec inside a manifest."""
    kind, spec = doc["kind"], doc.get("spec", {})
    if kind == "RayCluster":
        return [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]
    if kind == "RayJob":
        return [spec["submitterPodTemplate"]["spec"]]
    if kind == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if kind in ("Deployment", "StatefulSet"):
        return [spec["template"]["spec"]]
    return []


def k8s_quantity(value: str | int) -> float:
    text = str(value)
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    return float(text)


# --- image and versions ------------------------------------------------------------------------------------


def dockerfile_args(path: Path) -> dict[str, str]:
    args: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"ARG\s+(\w+)=(\S+)", line)
        if m:
            # An ARG repeated after FROM must keep the same default.
            assert args.setdefault(m.group(1), m.group(2)) == m.group(2), f"conflicting ARG {m.group(1)}"
    return args


def test_cluster_image_runs_the_clients_ray_and_torch() -> None:
    pin = ray_pin()
    args = dockerfile_args(INFRA / "docker" / "Dockerfile")
    assert args["RAY_VERSION"] == pin
    base = args["BASE_IMAGE"].replace("${RAY_VERSION}", args["RAY_VERSION"])
    assert base.startswith(f"rayproject/ray:{pin}-py311"), base
    # The same torch as the development install (Makefile), so results are comparable.
    assert f"torch=={args['TORCH_VERSION']}" in (ROOT / "Makefile").read_text()
    text = (INFRA / "docker" / "Dockerfile").read_text()
    # The build fails if the installed Ray differs from RAY_VERSION, rather than shipping a mismatched image.
    assert "ray.__version__" in text and "${RAY_VERSION}" in text
    # Every top-level package of the project ends up in the image.
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for pattern in packages["include"]:
        assert f"COPY --chown=ray:users {pattern.rstrip('*')} " in text, pattern


def test_dockerignore_keeps_the_context_small_and_secret_free() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", ".local-cluster", "mlruns", "data"):
        assert entry in ignored


# --- AWS cluster launcher config ---------------------------------------------------------------------------


def aws_config() -> dict:
    return yaml.safe_load(render((INFRA / "aws" / "cluster.yaml").read_text(), VALUES))


def ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def test_aws_config_validates_against_rays_schema_and_its_own_checks() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = aws_config()
    jsonschema.validate(cfg, ray_schema())
    validate_config(cfg)
    # What `ray up` does before launching: merge the AWS defaults, then validate again.
    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    assert prepared["available_node_types"]["head"]["max_workers"] == 0


def test_schema_check_rejects_a_broken_config() -> None:
    # The validation above is only worth something if it can fail: an unknown key and a wrong type both must.
    cfg = aws_config()
    cfg["available_node_types"]["gpu_worker"]["max_worker"] = 4
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cfg, ray_schema())
    cfg = aws_config()
    cfg["available_node_types"]["gpu_worker"]["resources"]["GPU"] = "8"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cfg, ray_schema())


GPUS_PER_INSTANCE = {"p4d.24xlarge": 8, "p4de.24xlarge": 8, "p5.48xlarge": 8, "p5e.48xlarge": 8, "g5.48xlarge": 8}
VCPUS_PER_INSTANCE = {"p4d.24xlarge": 96, "p5.48xlarge": 192, "c6i.8xlarge": 32, "m6i.2xlarge": 8}


def test_aws_config_cross_references() -> None:
    cfg = aws_config()
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    workers = {name: t for name, t in types.items() if name != cfg["head_node_type"]}
    for name, node_type in workers.items():
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"], name
    assert sum(t["max_workers"] for t in workers.values()) <= cfg["max_workers"]
    assert cfg["docker"]["image"] == VALUES["TDN_IMAGE"]
    # S3 through instance profiles, never keys: every node has a profile, nothing names a key.
    for name, node_type in types.items():
        assert node_type["node_config"]["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::"), name
    assert "aws_access_key_id" not in json.dumps(cfg).lower()
    # Declared resources agree with the instance types.
    gpu_types = {n: t for n, t in workers.items() if t["resources"].get("GPU", 0) > 0}
    assert gpu_types, "no GPU worker type"
    for name, node_type in gpu_types.items():
        instance = node_type["node_config"]["InstanceType"]
        assert node_type["resources"]["GPU"] == GPUS_PER_INSTANCE[instance], name
        assert node_type["resources"]["CPU"] <= VCPUS_PER_INSTANCE[instance], name
    assert any(t["resources"].get("GPU", 0) == 0 for t in workers.values()), "no CPU worker type"
    # Token auth in the container of every node, and the token fetched before Ray starts.
    assert "-e RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]
    assert any("infra.aws.node_secrets" in c for c in cfg["setup_commands"])
    head = " ".join(cfg["head_start_ray_commands"])
    worker = " ".join(cfg["worker_start_ray_commands"])
    assert "ray start --head" in head and "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "--address=$RAY_HEAD_IP:6379" in worker
    # The start commands run where the image put the code, so relative job entrypoints resolve.
    assert "cd /home/ray/tdn" in head and "cd /home/ray/tdn" in worker
    assert "WORKDIR /home/ray/tdn" in (INFRA / "docker" / "Dockerfile").read_text()


# --- renderer ----------------------------------------------------------------------------------------------


def test_render_fills_only_tdn_placeholders_and_names_missing_ones() -> None:
    text = "image: ${TDN_IMAGE}\ncmd: ray start --address=$RAY_HEAD_IP:6379 ${HOME} ${TDN_ECR_REGISTRY}\n"
    out = render(text, {"TDN_IMAGE": VALUES["TDN_IMAGE"]})
    assert "image: " + VALUES["TDN_IMAGE"] in out
    assert "$RAY_HEAD_IP" in out and "${HOME}" in out  # shell variables untouched
    assert "111122223333.dkr.ecr.us-west-2.amazonaws.com\n" in out  # registry derived from the image
    with pytest.raises(MissingValueError, match="TDN_BUCKET, TDN_REGION"):
        render("a: ${TDN_REGION}\nb: ${TDN_BUCKET}\n", {"TDN_REGION": ""})


def test_every_template_renders_with_the_documented_values() -> None:
    docs = (ROOT / "docs" / "cluster.md").read_text()
    templates = [INFRA / "aws" / "cluster.yaml", *K8S_FILES, *MLFLOW_K8S_FILES]
    used = set().union(*(placeholders(p.read_text()) for p in templates)) - {"TDN_ECR_REGISTRY"}
    assert used <= set(VALUES), used - set(VALUES)
    # docs/cluster.md tells the user to export each of them.
    for name in used:
        assert re.search(rf"\b{name}=", docs), f"docs/cluster.md never sets {name}"
    for path in templates:
        assert not placeholders(render(path.read_text(), VALUES, str(path)))


# --- KubeRay -----------------------------------------------------------------------------------------------


def test_every_manifest_has_the_required_fields() -> None:
    docs = all_k8s_docs()
    assert {"Namespace", "ServiceAccount", "RayCluster", "RayJob", "CronJob", "Deployment", "StatefulSet"} <= {
        d["kind"] for d in docs
    }
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "tdn", doc["metadata"]
        for spec in pod_specs(doc):
            for container in spec["containers"]:
                assert container.get("image"), (doc["metadata"]["name"], container["name"])
                assert container.get("resources", {}).get("limits"), (doc["metadata"]["name"], container["name"])


# Field names allowed by the KubeRay v1.6.2 CRDs (ray.io_rayclusters.yaml / ray.io_rayjobs.yaml); the API server
# silently drops unknown fields, so a typo would deploy a different cluster than the one written here.
RAYCLUSTER_SPEC_FIELDS = {
    "authOptions", "autoscalerOptions", "enableInTreeAutoscaling", "gcsFaultToleranceOptions", "headGroupSpec",
    "headServiceAnnotations", "managedBy", "rayVersion", "suspend", "upgradeStrategy", "workerGroupSpecs",
}
HEAD_GROUP_FIELDS = {"enableIngress", "headService", "labels", "rayStartParams", "resources", "serviceType", "template"}
WORKER_GROUP_FIELDS = {
    "groupName", "idleTimeoutSeconds", "labels", "maxReplicas", "minReplicas", "numOfHosts", "rayStartParams",
    "replicas", "resources", "scaleStrategy", "suspend", "template",
}
RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "clusterSelector", "deletionStrategy", "entrypoint",
    "entrypointNumCpus", "entrypointNumGpus", "entrypointResources", "jobId", "managedBy", "metadata",
    "preRunningDeadlineSeconds", "rayClusterSpec", "runtimeEnvYAML", "shutdownAfterJobFinishes", "submissionMode",
    "submitterConfig", "submitterPodTemplate", "suspend", "ttlSecondsAfterFinished",
}  # fmt: skip


def test_kuberay_manifests_use_only_fields_the_crds_define() -> None:
    docs = all_k8s_docs()
    (cluster,) = find(docs, "RayCluster")
    assert set(cluster["spec"]) <= RAYCLUSTER_SPEC_FIELDS, set(cluster["spec"]) - RAYCLUSTER_SPEC_FIELDS
    assert set(cluster["spec"]["headGroupSpec"]) <= HEAD_GROUP_FIELDS
    for group in cluster["spec"]["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP_FIELDS, set(group) - WORKER_GROUP_FIELDS
        assert {"groupName", "maxReplicas", "minReplicas", "template"} <= set(group)
    assert set(cluster["spec"]["authOptions"]) <= {"mode", "secretName", "enableK8sTokenAuth"}
    for job in find(docs, "RayJob"):
        assert set(job["spec"]) <= RAYJOB_SPEC_FIELDS, set(job["spec"]) - RAYJOB_SPEC_FIELDS
        assert job["spec"]["submissionMode"] in {"K8sJobMode", "HTTPMode", "SidecarMode", "InteractiveMode"}


def test_raycluster_resources_agree_with_ray_start_params() -> None:
    (cluster,) = find(all_k8s_docs(), "RayCluster")
    spec = cluster["spec"]
    assert spec["rayVersion"] == ray_pin()
    assert spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    groups = spec["workerGroupSpecs"]
    assert {g["groupName"] for g in groups} == {"cpu", "gpu"}
    for group in [head, *groups]:
        (container,) = group["template"]["spec"]["containers"]
        assert container["image"] == VALUES["TDN_IMAGE"]
        assert container["resources"]["requests"] == container["resources"]["limits"]
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert "/dev/shm" in mounts, "Ray's object store and NCCL need a real /dev/shm"
    for group in groups:
        name = group["groupName"]
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name
        (container,) = group["template"]["spec"]["containers"]
        limits = container["resources"]["limits"]
        params = group["rayStartParams"]
        assert int(params["num-cpus"]) == k8s_quantity(limits["cpu"]), name
        assert int(params.get("num-gpus", "0")) == int(limits.get("nvidia.com/gpu", 0)), name
        if int(params.get("num-gpus", "0")) > 0:
            tolerated = {t["key"] for t in group["template"]["spec"].get("tolerations", [])}
            assert "nvidia.com/gpu" in tolerated, name


def raycluster() -> dict:
    (cluster,) = find(all_k8s_docs(), "RayCluster")
    return cluster


def gpu_capacity(cluster: dict) -> int:
    return sum(
        g["maxReplicas"] * int(g["rayStartParams"].get("num-gpus", "0")) for g in cluster["spec"]["workerGroupSpecs"]
    )


def entrypoint_argv(job: dict) -> list[str]:
    return shlex.split(job["spec"]["entrypoint"])


def cron_argv(cron: dict) -> list[str]:
    (container,) = pod_specs(cron)[0]["containers"]
    command = container["command"]
    return command[command.index("--") + 1 :]


FLAGS_WITHOUT_VALUE = {"--gpus": "true"}


def job_config(argv: list[str]) -> object:
    """Parse a job command line with that job's own config dataclass, YAML preset and short flags.

    Unknown keys and bad values raise ConfigError, so a renamed config field or a typo in a manifest fails here.
    """
    import jobs.evaluate
    import jobs.reevaluate
    from pipeline.config import load_config
    from pipeline.shards.job import ShardConfig
    from tdn.evaluation.reevaluate import ReevaluateConfig
    from tdn.training.loop import TrainConfig

    assert argv[0] == "python", argv
    classes: dict[str, tuple[type, dict[str, str]]] = {
        "jobs/shard.py": (ShardConfig, {}),
        "jobs/train.py": (TrainConfig, {"--workers": "run.workers", "--gpus": "run.use_gpu"}),
        "jobs/evaluate.py": (jobs.evaluate.EvaluateJob, jobs.evaluate.ALIASES),
        "jobs/reevaluate.py": (ReevaluateConfig, jobs.reevaluate.ALIASES),
    }
    assert (ROOT / argv[1]).is_file(), f"{argv[1]} does not exist"
    cls, aliases = classes[argv[1]]
    preset, overrides, rest = None, [], argv[2:]
    while rest:
        flag = rest.pop(0)
        assert flag.startswith("--"), (flag, argv)
        value = FLAGS_WITHOUT_VALUE[flag] if flag in FLAGS_WITHOUT_VALUE else rest.pop(0)
        if flag == "--config":
            preset = ROOT / value
            assert preset.is_file(), f"{value} (referenced by {argv[1]}) does not exist"
        else:
            overrides.append(f"{aliases.get(flag, flag[2:])}={value}")
    return load_config(cls, preset, overrides)


def test_rayjobs_target_the_cluster_and_carry_its_token() -> None:
    docs = all_k8s_docs()
    cluster = raycluster()
    jobs = {j["metadata"]["name"]: j for j in find(docs, "RayJob")}
    assert set(jobs) == {"tdn-shard", "tdn-train", "tdn-evaluate"}
    secret = cluster["spec"]["authOptions"]["secretName"]
    for name, job in jobs.items():
        assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}, name
        assert entrypoint_argv(job)[:2] == ["python", f"jobs/{name.removeprefix('tdn-')}.py"]
        (container,) = job["spec"]["submitterPodTemplate"]["spec"]["containers"]
        assert container["image"] == VALUES["TDN_IMAGE"]
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "auth_token"}


def test_job_command_lines_parse_and_chain_shard_train_evaluate() -> None:
    docs = all_k8s_docs()
    jobs = {j["metadata"]["name"]: entrypoint_argv(j) for j in find(docs, "RayJob")}
    (cron,) = find(docs, "CronJob")
    shard = job_config(jobs["tdn-shard"])
    train = job_config(jobs["tdn-train"])
    evaluate = job_config(jobs["tdn-evaluate"])
    reevaluate = job_config(cron_argv(cron))
    bucket = f"s3://{VALUES['TDN_BUCKET']}/"
    # Everything lives in the bucket: no node-local path survives a pod.
    assert shard.dataset.root.startswith(bucket) and shard.output.startswith(bucket)
    assert train.data.shards == shard.output
    assert train.run.storage_path.startswith(bucket)
    assert evaluate.shards == reevaluate.shards == f"{shard.output}/val"
    assert "val" in shard.splits
    # Training asks for GPUs, and for no more workers than the GPU group can ever provide.
    assert train.run.use_gpu
    assert 0 < train.run.workers <= gpu_capacity(raycluster())
    # The evaluated model is the one training registers.
    registered = evaluate.model.uri.removeprefix("models:/").split("@")[0]
    assert registered == train.tracking.registered_model
    assert reevaluate.alias == evaluate.model.uri.split("@")[1]
    assert evaluate.eval.protocol == reevaluate.eval.protocol == "k400_10x3"
    # The shards hold what training and the evaluation protocol read: T segments, and one view per clip.
    from tdn.evaluation.batch_inference import PROTOCOLS

    assert shard.num_segments == train.model.num_segments
    assert shard.val.views == PROTOCOLS[evaluate.eval.protocol][0]


def test_reevaluation_is_scheduled_against_the_clusters_head_service() -> None:
    docs = all_k8s_docs()
    cluster = raycluster()
    (cron,) = find(docs, "CronJob")
    fields = cron["spec"]["schedule"].split()
    assert len(fields) == 5, cron["spec"]["schedule"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = pod_specs(cron)[0]["containers"]
    command = container["command"]
    assert command[:3] == ["ray", "job", "submit"]
    assert cron_argv(cron)[:2] == ["python", "jobs/reevaluate.py"]
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    address = command[command.index("--address") + 1]
    assert address == f"http://{name}-head-svc.{namespace}.svc.cluster.local:8265"
    env = {e["name"]: e for e in container["env"]}
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == cluster["spec"]["authOptions"]["secretName"]


def test_service_accounts_and_secrets_referenced_exist_or_are_documented() -> None:
    docs = all_k8s_docs()
    accounts = {d["metadata"]["name"] for d in find(docs, "ServiceAccount")}
    for doc in docs:
        for spec in pod_specs(doc):
            if "serviceAccountName" in spec:
                assert spec["serviceAccountName"] in accounts, doc["metadata"]["name"]
    for account in find(docs, "ServiceAccount"):
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == VALUES["TDN_IRSA_ROLE_ARN"]
    # Every Secret key a pod reads is created by a documented `kubectl create secret` command.
    wanted: set[tuple[str, str]] = set()
    for doc in docs:
        for spec in pod_specs(doc):
            for container in spec["containers"]:
                for env in container.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        wanted.add((ref["name"], ref["key"]))
    wanted.add((raycluster()["spec"]["authOptions"]["secretName"], "auth_token"))
    guide = (ROOT / "docs" / "cluster.md").read_text()
    created = {}
    pattern = r"kubectl -n tdn create secret generic ([\w-]+)((?:\s*\\?\s*--from-literal=[\w-]+=\S+)+)"
    for m in re.finditer(pattern, guide):
        created[m.group(1)] = set(re.findall(r"--from-literal=([\w-]+)=", m.group(2)))
    for name, key in sorted(wanted):
        assert key in created.get(name, set()), f"docs/cluster.md does not create secret {name} key {key}"


# --- MLflow service ----------------------------------------------------------------------------------------


def mlflow_env() -> dict[str, dict]:
    (deployment,) = [d for d in find(all_k8s_docs(), "Deployment") if d["metadata"]["name"] == "tdn-mlflow"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}, container


def test_mlflow_deployment_takes_secrets_from_secrets_and_allows_its_clients() -> None:
    env, container = mlflow_env()
    for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "DB_PASSWORD"):
        assert "secretKeyRef" in env[name]["valueFrom"], name
        assert "value" not in env[name], name
    for name in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_DATABASE_URI"):
        assert env[name]["value"].startswith("postgresql://mlflow:$(DB_PASSWORD)@"), name
    assert env["MLFLOW_ARTIFACTS_DESTINATION"]["value"] == f"s3://{VALUES['TDN_BUCKET']}/mlflow-artifacts"
    allowed = env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    assert VALUES["TDN_MLFLOW_HOST"] in allowed
    assert env["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"]["value"] == f"https://{VALUES['TDN_MLFLOW_HOST']}"
    # The Host the Ray pods send (from their MLFLOW_TRACKING_URI) and the probes send must be allowed.
    cluster = raycluster()
    (head,) = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    uri = {e["name"]: e.get("value") for e in head["env"]}["MLFLOW_TRACKING_URI"]
    assert uri.removeprefix("http://") in allowed
    for probe in ("readinessProbe", "livenessProbe"):
        headers = {h["name"]: h["value"] for h in container[probe]["httpGet"]["httpHeaders"]}
        assert headers["Host"] in allowed


def test_mlflow_server_command_has_auth_proxy_and_allowlists() -> None:
    from mlflow.cli import server as server_cli

    from infra.mlflow.server import ServerConfigError, server_command

    env = {k: v.get("value", "from-secret") for k, v in mlflow_env()[0].items()}
    argv = server_command(env)
    i = argv.index("server")
    assert argv[i + 1 : i + 3] == ["--app-name", "basic-auth"]
    assert "--serve-artifacts" in argv
    assert argv[argv.index("--artifacts-destination") + 1].startswith("s3://")
    assert argv[argv.index("--allowed-hosts") + 1] == env["MLFLOW_SERVER_ALLOWED_HOSTS"]
    assert argv[argv.index("--cors-allowed-origins") + 1] == env["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"]
    # Every flag we pass exists in the installed `mlflow server`.
    known = {opt for param in server_cli.params for opt in param.opts + param.secondary_opts}
    assert {a for a in argv[i + 1 :] if a.startswith("--")} <= known
    # The store URI (with its password) is never on the command line.
    assert not any("postgresql://" in a for a in argv)
    del env["MLFLOW_AUTH_ADMIN_PASSWORD"], env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    with pytest.raises(ServerConfigError, match="MLFLOW_AUTH_ADMIN_PASSWORD, MLFLOW_FLASK_SERVER_SECRET_KEY"):
        server_command(env)


def test_auth_config_gets_the_database_from_the_environment_and_no_password(tmp_path: Path) -> None:
    import configparser

    from infra.mlflow.server import TEMPLATE, ServerConfigError, auth_config_text

    uri = "postgresql://mlflow:p%40ss@db:5432/mlflow"  # '%' must survive: no ConfigParser interpolation
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.read_string(auth_config_text(uri))
    assert parsed["mlflow"]["database_uri"] == uri
    assert parsed["mlflow"]["authorization_function"] == "mlflow.server.auth:authenticate_request_basic_auth"
    assert not parsed["mlflow"].get("admin_password")
    bad = tmp_path / "basic_auth.ini"
    bad.write_text(TEMPLATE.read_text() + "admin_password = hunter2hunter2\n")
    with pytest.raises(ServerConfigError, match="admin_password"):
        auth_config_text(uri, bad)


def test_compose_file_takes_every_secret_from_the_environment() -> None:
    compose = yaml.safe_load((INFRA / "mlflow" / "docker-compose.yaml").read_text())
    mlflow_env_ = compose["services"]["mlflow"]["environment"]
    for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", mlflow_env_[name]), name
    assert "${POSTGRES_PASSWORD:?" in mlflow_env_["MLFLOW_BACKEND_STORE_URI"]
    assert compose["services"]["db"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert compose["services"]["mlflow"]["build"]["dockerfile"] == "infra/mlflow/Dockerfile"


# --- secrets -----------------------------------------------------------------------------------------------

SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key": re.compile(r"(?i)aws_secret_access_key\W{1,4}[A-Za-z0-9/+=]{40}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    # password/secret/token keys with a literal value (not $VAR, ${VAR}, $(VAR), a secretKeyRef, or code).
    "literal password": re.compile(
        r"(?im)^[\s\-]*[\"']?[\w.-]*(password|passwd|secret[_-]?key|auth[_-]?token)[\"']?\s*[:=]\s*"
        r"(?![\s\"']*(\$|\{|$|os\.environ|None|getpass|values\[|env\[|args\.))[\"']?[^\s\"'#]{4,}"
    ),
    "password in a URI": re.compile(r"://[\w.-]+:(?![$<{])[^@\s/]{3,}@"),
}


def scan_for_secrets(text: str) -> list[str]:
    return [f"{name}: {m.group(0)!r}" for name, rx in SECRET_PATTERNS.items() for m in rx.finditer(text)]


def test_scanner_finds_planted_secrets() -> None:
    planted = [
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "password: hunter2hunter2",
        "  admin_password = s3cr3t-value",
        'MLFLOW_FLASK_SERVER_SECRET_KEY: "abcdef123456"',
        "postgresql://mlflow:plainpass@db:5432/mlflow",
        "-----BEGIN RSA PRIVATE KEY-----",
    ]
    for line in planted:
        assert scan_for_secrets(line), line
    clean = [
        "password: ${POSTGRES_PASSWORD:?set it}",
        "MLFLOW_BACKEND_STORE_URI: postgresql://mlflow:$(DB_PASSWORD)@db:5432/mlflow",
        "  valueFrom: {secretKeyRef: {name: tdn-mlflow-server, key: admin-password}}",
        "password = os.environ.get('TDN_NEW_USER_PASSWORD')",
    ]
    for line in clean:
        assert not scan_for_secrets(line), line


def test_no_secrets_in_infra_or_docs() -> None:
    paths = [p for p in INFRA.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    paths += [ROOT / "docs" / "cluster.md", ROOT / ".dockerignore"]
    assert len(paths) > 15
    findings = [f"{p.relative_to(ROOT)}: {hit}" for p in paths for hit in scan_for_secrets(p.read_text())]
    assert not findings, "\n".join(findings)
