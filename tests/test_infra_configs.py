"""Deployment assets checked against each other, against the schemas Ray and KubeRay ship, and for secrets.

Fast (no services): the Dockerfile's Ray against the clients' pin, the AWS launcher config against
ray-schema.json and Ray's own validate/prepare, the RayCluster and RayJobs against the openAPIV3Schema of
KubeRay v1.6.2's CRDs (tests/data/kuberay-crds/, structural-schema rules and CEL rules included), the plain
Kubernetes workloads' pods and volume claims against the Kubernetes schemas embedded in those CRDs, the GCS
fault tolerance wiring (Redis, its Secret, the training driver off the head), the manifests' cross-references
and resource figures, the template renderer, the MLflow server command and auth file, and a scan for anything
that looks like a credential. Each schema check is also shown to reject a deliberately broken manifest.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from jsonschema import ValidationError

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
        return [spec["headGroupSpec"]["template"]["spec"]] + [
            g["template"]["spec"] for g in spec["workerGroupSpecs"]
        ]
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


GPUS_PER_INSTANCE = {
    "p4d.24xlarge": 8,
    "p4de.24xlarge": 8,
    "p5.48xlarge": 8,
    "p5e.48xlarge": 8,
    "g5.48xlarge": 8,
}
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
    assert {
        "Namespace",
        "ServiceAccount",
        "RayCluster",
        "RayJob",
        "CronJob",
        "Deployment",
        "StatefulSet",
    } <= {d["kind"] for d in docs}
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "tdn", doc["metadata"]
        for spec in pod_specs(doc):
            for container in spec["containers"]:
                assert container.get("image"), (doc["metadata"]["name"], container["name"])
                assert container.get("resources", {}).get("limits"), (
                    doc["metadata"]["name"],
                    container["name"],
                )


# --- KubeRay CRD schemas -----------------------------------------------------------------------------------
# The API server checks a custom resource against the openAPIV3Schema of its CRD version; kubectl's default
# (strict field validation) also rejects fields the schema does not define, which the server would otherwise
# silently drop, deploying a different cluster than the one written here. The same checks, offline, against
# the CRDs of the KubeRay release docs/cluster.md installs.

KUBERAY_VERSION = "v1.6.2"
CRD_DIR = ROOT / "tests" / "data" / "kuberay-crds" / KUBERAY_VERSION
# libyaml reads the 2.2 MB of CRDs 5x faster than PyYAML in Python (3.6 s against 19.5 s on a busy 2-core box).
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# ObjectMeta of a top-level object (the CRDs say only `type: object`: the API server checks it itself).
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
    "anyOf": [{"required": ["name"]}, {"required": ["generateName"]}],
    "additionalProperties": False,
}

# The CEL rules (x-kubernetes-validations) of the stored CRDs, in Python. A rule missing here fails the check,
# so a new CRD release cannot slip an unchecked rule past it.
CEL_RULES: dict[str, Callable[[Any], bool]] = {
    # Transition rule: compares with the stored object, so it holds for an object being created.
    "self == oldSelf": lambda self: True,
    "self in ['ray.io/kuberay-operator', 'kueue.x-k8s.io/multikueue']": lambda self: (
        self in ("ray.io/kuberay-operator", "kueue.x-k8s.io/multikueue")
    ),
    "!(has(self.jobStatus) && has(self.jobDeploymentStatus))": lambda self: (
        not ("jobStatus" in self and "jobDeploymentStatus" in self)
    ),
    "has(self.jobStatus) || has(self.jobDeploymentStatus)": lambda self: (
        "jobStatus" in self or "jobDeploymentStatus" in self
    ),
    "!((has(self.onSuccess) || has(self.onFailure)) && has(self.deletionRules))": lambda self: (
        not (("onSuccess" in self or "onFailure" in self) and "deletionRules" in self)
    ),
    "((has(self.onSuccess) && has(self.onFailure)) || has(self.deletionRules))": lambda self: (
        ("onSuccess" in self and "onFailure" in self) or "deletionRules" in self
    ),
}


def to_json_schema(node: dict) -> dict:
    """A Kubernetes structural schema node (and all below it) as JSON Schema, the server's rules spelt out.

    - `x-kubernetes-int-or-string: true`: an integer or a string (`anyOf`); a `pattern` beside it applies to
      the string only, as in Kubernetes.
    - `x-kubernetes-preserve-unknown-fields: true`: fields the schema does not name are kept, so allowed;
      everywhere else an object takes only its `properties` (`additionalProperties: false`), or, when it has
      neither properties nor additionalProperties, nothing at all (the server would prune every field).
    - `x-kubernetes-embedded-resource: true`: apiVersion, kind and metadata are allowed even if not listed.
    - `nullable: true`: null is allowed too.
    List types, CEL rules and int32/int64 formats stay in place for the keywords that CrdValidator adds.
    """
    out = dict(node)
    if "properties" in node:
        out["properties"] = {name: to_json_schema(child) for name, child in node["properties"].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            out[key] = to_json_schema(node[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in node:
            out[key] = [to_json_schema(child) for child in node[key]]
    if node.get("x-kubernetes-embedded-resource"):
        out["properties"] = {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            **out.get("properties", {}),
        }
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    if node.get("nullable"):
        out = {"anyOf": [{"type": "null"}, out]}
    return out


def list_type(validator: Any, kind: str, instance: Any, schema: dict) -> Iterator[ValidationError]:
    """`x-kubernetes-list-type`: `set` items are unique; `map` items are unique by their key fields."""
    if not isinstance(instance, list) or kind == "atomic":
        return
    if kind == "set":
        keys = [json.dumps(item, sort_keys=True) for item in instance]
    else:
        fields = schema["x-kubernetes-list-map-keys"]
        defaults = {f: schema["items"]["properties"][f].get("default") for f in fields}
        keys = [json.dumps([item.get(f, defaults[f]) for f in fields]) for item in instance]
    for key in sorted({k for k in keys if keys.count(k) > 1}):
        yield ValidationError(f"duplicate entry {key} in a list of type {kind}")


def cel_rules(validator: Any, rules: list[dict], instance: Any, schema: dict) -> Iterator[ValidationError]:
    """`x-kubernetes-validations`: each CEL rule, through its Python translation in CEL_RULES."""
    for rule in rules:
        if rule["rule"] not in CEL_RULES:
            yield ValidationError(f"CEL rule {rule['rule']!r} has no translation in CEL_RULES")
        elif not CEL_RULES[rule["rule"]](instance):
            yield ValidationError(rule.get("message", rule["rule"]))


FORMATS = jsonschema.FormatChecker(formats=())
FORMATS.checks("int32")(lambda value: not isinstance(value, int) or -(2**31) <= value < 2**31)
FORMATS.checks("int64")(lambda value: not isinstance(value, int) or -(2**63) <= value < 2**63)
# OpenAPI v3.0 schemas follow JSON Schema draft 4 (boolean exclusiveMinimum/Maximum).
CrdValidator = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"x-kubernetes-list-type": list_type, "x-kubernetes-validations": cel_rules}
)


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema of every served version of the stored CRDs."""
    schemas = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=YAML_LOADER)
        assert crd["kind"] == "CustomResourceDefinition", path
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version["served"]:
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


@functools.cache
def crd_validator(api_version: str, kind: str) -> Any:
    schemas = crd_schemas()
    assert (api_version, kind) in schemas, f"no served {kind} {api_version} in {CRD_DIR.relative_to(ROOT)}"
    schema = to_json_schema(schemas[(api_version, kind)])
    schema["properties"]["metadata"] = OBJECT_META
    schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
    return CrdValidator(schema, format_checker=FORMATS)


def schema_errors(validator: Any, instance: Any) -> list[str]:
    """Every violation as `path.to.field: message`, the way `kubectl apply` names them."""
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


def crd_errors(doc: dict) -> list[str]:
    return schema_errors(crd_validator(doc["apiVersion"], doc["kind"]), doc)


def kuberay_docs() -> list[dict]:
    return [d for d in all_k8s_docs() if d["apiVersion"].split("/")[0] == "ray.io"]


def test_the_stored_crds_are_those_of_the_installed_operator() -> None:
    guide = (ROOT / "docs" / "cluster.md").read_text()
    assert f"kuberay/kuberay-operator --version {KUBERAY_VERSION.removeprefix('v')} " in guide
    readme = (CRD_DIR / "README.md").read_text()
    assert f"tag {KUBERAY_VERSION}" in readme
    assert {kind for _, kind in crd_schemas()} >= {d["kind"] for d in kuberay_docs()}


SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "SidecarMode", "InteractiveMode"}


def test_kuberay_manifests_validate_against_the_crds() -> None:
    docs = kuberay_docs()
    assert {d["kind"] for d in docs} == {"RayCluster", "RayJob"}
    for doc in docs:
        errors = crd_errors(doc)
        assert not errors, f"{doc['kind']} {doc['metadata']['name']}:\n" + "\n".join(errors)
        if doc["kind"] == "RayJob":  # a plain string in the CRD; KubeRay rejects other values at runtime
            assert doc["spec"]["submissionMode"] in SUBMISSION_MODES


def gpu_group(doc: dict) -> dict:
    return next(g for g in doc["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu")


def head_container(doc: dict) -> dict:
    return doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]


def limits(doc: dict) -> dict:
    return head_container(doc)["resources"]["limits"]


# Each breaks one rule of the schema: (kind, how, what the error says).
BROKEN_MANIFESTS: dict[str, tuple[str, Callable[[dict], object], str]] = {
    "unknown spec field": (
        "RayCluster",
        lambda d: d["spec"].update(gcsFaultTolerance={}),
        "spec: Additional",
    ),
    "unknown field in a worker group": (
        "RayCluster",
        lambda d: gpu_group(d).update(maxReplica=4),
        "spec.workerGroupSpecs.1: Additional",
    ),
    "unknown field deep in a pod template": (
        "RayCluster",
        lambda d: head_container(d).update(resource={}),
        "containers.0: Additional",
    ),
    "unknown field in metadata": (
        "RayCluster",
        lambda d: d["metadata"].update(label={}),
        "metadata: Additional",
    ),
    "string for an integer": (
        "RayCluster",
        lambda d: gpu_group(d).update(maxReplicas="4"),
        "maxReplicas: '4'",
    ),
    "integer beyond int32": (
        "RayCluster",
        lambda d: gpu_group(d).update(maxReplicas=2**31),
        "maxReplicas: 2147483648",
    ),
    "quantity that is no quantity": (
        "RayCluster",
        lambda d: limits(d).update(cpu="four"),
        "limits.cpu: 'four' does not match",
    ),
    "float for an int-or-string": ("RayCluster", lambda d: limits(d).update(cpu=4.5), "limits.cpu: 4.5"),
    "missing required field": (
        "RayCluster",
        lambda d: d["spec"].pop("headGroupSpec"),
        "spec: 'headGroupSpec' is a required",
    ),
    "GCS fault tolerance without a Redis address": (
        "RayCluster",
        lambda d: d["spec"]["gcsFaultToleranceOptions"].pop("redisAddress"),
        "'redisAddress'",
    ),
    "duplicate key in a list map": (
        "RayCluster",
        lambda d: head_container(d)["env"].append(head_container(d)["env"][0]),
        "duplicate",
    ),
    "CEL rule": ("RayCluster", lambda d: d["spec"].update(managedBy="me"), "spec.managedBy: the managedBy"),
    "invalid name": (
        "RayCluster",
        lambda d: d["metadata"].update(name="TDN_cluster"),
        "metadata.name: 'TDN_cluster'",
    ),
    "RayJob: unknown field": ("RayJob", lambda d: d["spec"].update(entrypointNumCPUs=1), "spec: Additional"),
    "RayJob: string for a number": (
        "RayJob",
        lambda d: d["spec"].update(entrypointNumCpus="1"),
        "entrypointNumCpus: '1'",
    ),
    "RayJob: string for a map": (
        "RayJob",
        lambda d: d["spec"].update(clusterSelector="tdn"),
        "clusterSelector: 'tdn'",
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN_MANIFESTS))
def test_crd_validation_rejects_a_broken_manifest(name: str) -> None:
    kind, breaks, expected = BROKEN_MANIFESTS[name]
    doc = copy.deepcopy(next(d for d in kuberay_docs() if d["kind"] == kind))
    assert not crd_errors(doc)
    breaks(doc)
    errors = crd_errors(doc)
    assert any(expected in e for e in errors), errors


def test_structural_schema_extensions_are_translated() -> None:
    # The v1.6.2 CRDs have no x-kubernetes-preserve-unknown-fields and no nullable field in a spec; this
    # schema has both, with the other extensions, so each translation is seen to accept and to reject.
    kept = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema = to_json_schema(
        {
            "type": "object",
            "properties": {
                "port": {
                    "x-kubernetes-int-or-string": True,
                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                    "pattern": "^[a-z]+$",
                },
                "config": {**kept, "properties": {"level": {"type": "integer"}}},
                "strict": {"type": "object", "properties": {"level": {"type": "integer"}}},
                "empty": {"type": "object"},
                "note": {"type": "string", "nullable": True},
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "properties": {"spec": kept},
                },
                "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            },
        }
    )
    validator = CrdValidator(schema, format_checker=FORMATS)
    good = [
        {"port": 8080},
        {"port": "http"},
        {"config": {"level": 1, "anything": {"else": [1, 2]}}},
        {"strict": {"level": 1}},
        {"empty": {}},
        {"note": None},
        {"note": "x"},
        {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"x": 1}}},
        {"tags": ["a", "b"]},
    ]
    bad = [
        {"port": 80.5},
        {"port": True},
        {"port": "HTTP"},
        {"port": None},
        {"config": {"level": "one"}},
        {"strict": {"level": 1, "other": 2}},
        {"empty": {"a": 1}},
        {"note": 3},
        {"template": {"status": {}}},
        {"tags": ["a", "a"]},
        {"unknown": 1},
    ]
    for instance in good:
        assert not schema_errors(validator, instance), instance
    for instance in bad:
        assert schema_errors(validator, instance), instance


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
        g["maxReplicas"] * int(g["rayStartParams"].get("num-gpus", "0"))
        for g in cluster["spec"]["workerGroupSpecs"]
    )


def entrypoint_argv(job: dict) -> list[str]:
    return shlex.split(job["spec"]["entrypoint"])


def cron_argv(cron: dict) -> list[str]:
    (container,) = pod_specs(cron)[0]["containers"]
    command = container["command"]
    return command[command.index("--") + 1 :]


def job_config(argv: list[str]) -> object:
    """Parse a job command line with that job's own parser (jobs/cli.py: config dataclass, preset, shortcuts).

    Unknown keys and bad values raise, so a renamed config field or a typo in a manifest fails here.
    """
    import importlib

    from jobs.cli import parse

    assert argv[:2] == ["python", "-m"] and argv[2].startswith("jobs."), argv
    module = argv[2]
    assert (ROOT / f"{module.replace('.', '/')}.py").is_file(), f"{module} does not exist"
    job = importlib.import_module(module).JOB
    args = list(argv[3:])
    for i, flag in enumerate(args[:-1]):
        if flag == "--config":  # relative to the image's working directory, the repository root
            assert (ROOT / args[i + 1]).is_file(), f"{args[i + 1]} (referenced by {module}) does not exist"
            args[i + 1] = str(ROOT / args[i + 1])
    cfg, _ = parse(job, args)
    return cfg


def test_rayjobs_target_the_cluster_and_carry_its_token() -> None:
    docs = all_k8s_docs()
    cluster = raycluster()
    jobs = {j["metadata"]["name"]: j for j in find(docs, "RayJob")}
    assert set(jobs) == {"tdn-shard", "tdn-train", "tdn-evaluate"}
    secret = cluster["spec"]["authOptions"]["secretName"]
    for name, job in jobs.items():
        assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}, name
        assert entrypoint_argv(job)[:3] == ["python", "-m", f"jobs.{name.removeprefix('tdn-')}"]
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
    from tdn.evaluation.protocol import PROTOCOLS

    assert shard.num_segments == train.model.num_segments
    assert shard.val.views == PROTOCOLS[evaluate.eval.protocol].clips


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
    assert cron_argv(cron)[:3] == ["python", "-m", "jobs.reevaluate"]
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    address = command[command.index("--address") + 1]
    assert address == f"http://{name}-head-svc.{namespace}.svc.cluster.local:8265"
    env = {e["name"]: e for e in container["env"]}
    assert (
        env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"]
        == cluster["spec"]["authOptions"]["secretName"]
    )


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
    redis_password = raycluster()["spec"]["gcsFaultToleranceOptions"]["redisPassword"]["valueFrom"]
    wanted.add((redis_password["secretKeyRef"]["name"], redis_password["secretKeyRef"]["key"]))
    guide = (ROOT / "docs" / "cluster.md").read_text()
    created = {}
    pattern = r"kubectl -n tdn create secret generic ([\w-]+)((?:\s*\\?\s*--from-literal=[\w-]+=\S+)+)"
    for m in re.finditer(pattern, guide):
        created[m.group(1)] = set(re.findall(r"--from-literal=([\w-]+)=", m.group(2)))
    for name, key in sorted(wanted):
        assert key in created.get(name, set()), f"docs/cluster.md does not create secret {name} key {key}"


# --- core Kubernetes objects -------------------------------------------------------------------------------
# No Kubernetes OpenAPI document is stored here, but KubeRay's CRD embeds Kubernetes' own PodTemplateSpec and
# PersistentVolumeClaimSpec (generated from k8s.io/api), so the pods and volume claims of the plain workloads
# are checked against those; the rest by the cross-references Kubernetes needs to wire them together.


def embedded_schema(*path: str) -> dict:
    node = crd_schemas()[("ray.io/v1", "RayCluster")]
    for name in ("spec", "headGroupSpec", "template", *path):
        node = node["items"] if name == "items" else node["properties"][name]
    return node


@functools.cache
def pod_template_validator() -> Any:
    return CrdValidator(to_json_schema(embedded_schema()), format_checker=FORMATS)


@functools.cache
def claim_spec_validator() -> Any:
    claim = embedded_schema("spec", "volumes", "items", "ephemeral", "volumeClaimTemplate", "spec")
    return CrdValidator(to_json_schema(claim), format_checker=FORMATS)


def pod_template(doc: dict) -> dict:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]
    return doc["spec"]["template"]


WORKLOADS = {"Deployment", "StatefulSet", "CronJob"}
CORE_KINDS = {"Namespace", "ServiceAccount", "ConfigMap", "Service", "Ingress", *WORKLOADS}


def core_manifest_problems(docs: list[dict]) -> list[str]:
    """What the API server or the wiring between the objects would refuse, one line each (empty: all good)."""
    problems = [f"{d['kind']}: no checks for this kind here" for d in docs if d["kind"] not in CORE_KINDS]
    by_kind = {kind: {d["metadata"]["name"]: d for d in find(docs, kind)} for kind in CORE_KINDS}
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    for doc in docs:
        where = f"{doc['kind']} {doc['metadata'].get('name')}"
        problems += [f"{where}: {e}" for e in schema_errors(CrdValidator(OBJECT_META), doc["metadata"])]
    for doc in workloads:
        where, template = f"{doc['kind']} {doc['metadata']['name']}", pod_template(doc)
        problems += [f"{where}: {e}" for e in schema_errors(pod_template_validator(), template)]
        claims = {c["metadata"]["name"]: c["spec"] for c in doc["spec"].get("volumeClaimTemplates", [])}
        for claim_name, claim in claims.items():
            where_claim = f"{where} claim {claim_name}"
            problems += [f"{where_claim}: {e}" for e in schema_errors(claim_spec_validator(), claim)]
            requests = claim.get("resources", {}).get("requests", {})
            if not claim.get("accessModes") or "storage" not in requests:
                problems.append(f"{where_claim}: no accessModes or no storage request")
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        for container in template["spec"]["containers"]:
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volumes.keys() | claims.keys():
                    problems.append(f"{where}: volumeMount {mount['name']} has no volume")
        for volume in volumes.values():
            if "configMap" in volume and volume["configMap"]["name"] not in by_kind["ConfigMap"]:
                problems.append(f"{where}: volume {volume['name']} names a missing ConfigMap")
        if doc["kind"] != "CronJob":
            selector = doc["spec"]["selector"]["matchLabels"]
            if not selector or not selector.items() <= template["metadata"]["labels"].items():
                problems.append(f"{where}: selector {selector} does not select its own pods")
        if doc["kind"] == "StatefulSet" and doc["spec"]["serviceName"] not in by_kind["Service"]:
            problems.append(f"{where}: serviceName {doc['spec']['serviceName']} is no Service")
    for name, service in by_kind["Service"].items():
        # The selector picks exactly one workload's pods, and every targetPort is a port of its container.
        selector = service["spec"]["selector"].items()
        selected = [w for w in workloads if selector <= pod_labels(w).items()]
        if len(selected) != 1:
            problems.append(f"Service {name}: selects {len(selected)} workloads")
            continue
        containers = pod_template(selected[0])["spec"]["containers"]
        container_ports = {p["containerPort"] for c in containers for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if not isinstance(port["port"], int) or target not in container_ports:
                problems.append(f"Service {name}: port {port} is no port of its pods")
    for name, config_map in by_kind["ConfigMap"].items():
        if not all(isinstance(v, str) for v in config_map["data"].values()):
            problems.append(f"ConfigMap {name}: a data value is not a string")
    for name, ingress in by_kind["Ingress"].items():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                ports = by_kind["Service"].get(backend["name"], {}).get("spec", {}).get("ports", [])
                if backend["port"]["number"] not in {p["port"] for p in ports}:
                    problems.append(f"Ingress {name}: backend {backend} is no Service port")
    return problems


def pod_labels(doc: dict) -> dict[str, str]:
    return pod_template(doc).get("metadata", {}).get("labels", {})


def core_docs() -> list[dict]:
    return [d for d in all_k8s_docs() if d["apiVersion"].split("/")[0] != "ray.io"]


def test_core_manifests_have_valid_pods_and_consistent_references() -> None:
    problems = core_manifest_problems(core_docs())
    assert not problems, "\n".join(problems)


def named(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def redis_container(docs: list[dict]) -> dict:
    return named(docs, "StatefulSet", "tdn-redis")["spec"]["template"]["spec"]["containers"][0]


def redis_claim(docs: list[dict]) -> dict:
    return named(docs, "StatefulSet", "tdn-redis")["spec"]["volumeClaimTemplates"][0]["spec"]


def redis_service(docs: list[dict]) -> dict:
    return named(docs, "Service", "tdn-redis")


# Each breaks one thing the API server or the wiring would refuse: (how, what the problem says).
BROKEN_CORE_MANIFESTS: dict[str, tuple[Callable[[list[dict]], object], str]] = {
    "unknown container field": (
        lambda docs: redis_container(docs).update(volumeMount=[]),
        "containers.0: Additional properties",
    ),
    "string for an integer": (
        lambda docs: redis_container(docs)["ports"][0].update(containerPort="6379"),
        "'6379' is not of",
    ),
    "quantity that is no quantity": (
        lambda docs: redis_container(docs)["resources"]["limits"].update(memory="4 GB"),
        "'4 GB' does not",
    ),
    "claim without storage": (
        lambda docs: redis_claim(docs).pop("resources"),
        "claim data: no accessModes or no storage request",
    ),
    "claim with a bad access mode": (
        lambda docs: redis_claim(docs).update(accessModes="ReadWriteOnce"),
        "is not of type 'array'",
    ),
    "mount without a volume": (
        lambda docs: redis_container(docs)["volumeMounts"].append({"name": "c", "mountPath": "/c"}),
        "volumeMount c has no volume",
    ),
    "missing ConfigMap": (
        lambda docs: docs.remove(named(docs, "ConfigMap", "tdn-redis-config")),
        "names a missing ConfigMap",
    ),
    "Service port the pod does not open": (
        lambda docs: redis_service(docs)["spec"]["ports"][0].update(targetPort=6380),
        "is no port of its",
    ),
    "Service selecting nothing": (
        lambda docs: redis_service(docs)["spec"].update(selector={"app": "redis"}),
        "selects 0 workloads",
    ),
    "StatefulSet without its Service": (
        lambda docs: docs.remove(redis_service(docs)),
        "serviceName tdn-redis is no Service",
    ),
    "bad name": (
        lambda docs: redis_service(docs)["metadata"].update(name="tdn_redis"),
        "'tdn_redis' does not match",
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN_CORE_MANIFESTS))
def test_core_manifest_check_rejects_a_broken_manifest(name: str) -> None:
    breaks, expected = BROKEN_CORE_MANIFESTS[name]
    docs = copy.deepcopy(core_docs())
    breaks(docs)
    problems = core_manifest_problems(docs)
    assert any(expected in p for p in problems), problems


def redis_conf(text: str) -> dict[str, str]:
    lines = [line.strip() for line in text.splitlines()]
    return dict(line.split(None, 1) for line in lines if line and not line.startswith("#"))


def test_the_cluster_keeps_its_state_in_redis_so_training_outlives_the_head_pod() -> None:
    docs = all_k8s_docs()
    cluster = raycluster()
    ft = cluster["spec"]["gcsFaultToleranceOptions"]
    # The address is the Redis Service of these manifests, by its cluster DNS name.
    host, port = ft["redisAddress"].rsplit(":", 1)
    services = {
        "{name}.{namespace}.svc.cluster.local".format(**s["metadata"]): s for s in find(docs, "Service")
    }
    service = services[host]
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}
    selector = service["spec"]["selector"].items()
    (redis,) = [s for s in find(docs, "StatefulSet") if selector <= pod_labels(s).items()]
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    # One password, in one Secret: what the cluster sends is what Redis requires; no file holds it.
    env = {e["name"]: e for e in container["env"]}
    secret = ft["redisPassword"]["valueFrom"]["secretKeyRef"]
    assert env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == secret
    argv = container["command"] + container["args"]
    assert argv[argv.index("--requirepass") + 1] == "$(REDISCLI_AUTH)"
    # Every write in an append-only file, on the persistent volume.
    volumes = {v["name"]: v for v in redis["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    conf_mount = mounts[argv[1]]  # redis-server's first argument: its config file
    config_map = volumes[conf_mount["name"]]["configMap"]["name"]
    (config,) = [c for c in find(docs, "ConfigMap") if c["metadata"]["name"] == config_map]
    conf = redis_conf(config["data"][conf_mount["subPath"]])
    assert conf["appendonly"] == "yes" and "requirepass" not in conf
    claims = {c["metadata"]["name"] for c in redis["spec"]["volumeClaimTemplates"]}
    assert mounts[conf["dir"]]["name"] in claims
    assert int(conf["port"]) == service["spec"]["ports"][0]["targetPort"]
    # KubeRay refuses a cluster that sets these beside gcsFaultToleranceOptions (utils/validation.go).
    head = cluster["spec"]["headGroupSpec"]
    assert not {"redis-password", "redis-username"} & head["rayStartParams"].keys()
    head_env = {e["name"] for e in head_container(cluster)["env"]}
    assert not {"RAY_REDIS_ADDRESS", "REDIS_PASSWORD", "REDIS_USERNAME"} & head_env
    assert "ray.io/ft-enabled" not in cluster["metadata"].get("annotations", {})
    # The training driver asks for a CPU, which the head (num-cpus 0) has not: it runs on a worker pod and
    # outlives the head. Its submitter retries for longer than the workers wait for a head (KubeRay gives them
    # RAY_gcs_rpc_server_reconnect_timeout_s=600): Kubernetes waits 10 s * 2^i, at most 360 s, before retry i.
    (train,) = [j for j in find(docs, "RayJob") if j["metadata"]["name"] == "tdn-train"]
    assert head["rayStartParams"]["num-cpus"] == "0" and train["spec"]["entrypointNumCpus"] > 0
    retries = train["spec"]["submitterConfig"]["backoffLimit"]
    assert sum(min(10 * 2**i, 360) for i in range(retries)) > 600


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
    argv = server_command(env).argv()
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
    with pytest.raises(ServerConfigError, match="MLFLOW_PORT must be a whole number"):
        server_command({**env, "MLFLOW_PORT": "http"})
    with pytest.raises(ServerConfigError, match="port must be in 1..65535"):
        server_command({**env, "MLFLOW_PORT": "70000"})
    del env["MLFLOW_AUTH_ADMIN_PASSWORD"], env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    with pytest.raises(ServerConfigError, match="MLFLOW_AUTH_ADMIN_PASSWORD, MLFLOW_FLASK_SERVER_SECRET_KEY"):
        server_command(env)


def test_every_mlflow_server_is_built_by_the_one_command_builder() -> None:
    """Each flag the builder can emit exists in the installed `mlflow server`; its environment turns MLflow's
    job runner off; and nothing else in the repository spells out an `mlflow server` command line."""
    from mlflow.cli import server as server_cli

    from infra.mlflow.command import SERVER_ENV, MlflowServerCommand

    full = MlflowServerCommand(
        port=5001,
        host="0.0.0.0",
        workers=2,
        backend_store_uri="sqlite:///x.db",
        artifacts_destination="s3://b/a",
        app_name="basic-auth",
        allowed_hosts="h",
        cors_allowed_origins="https://h",
    )
    argv = full.argv()
    assert " ".join(argv[1:4]) == "-m mlflow server"
    known = {opt for param in server_cli.params for opt in param.opts + param.secondary_opts}
    assert {a for a in argv if a.startswith("--")} <= known
    assert argv[argv.index("--backend-store-uri") + 1] == "sqlite:///x.db"
    assert full.uri == "http://127.0.0.1:5001"
    bare = MlflowServerCommand(port=5002).argv()
    assert "--backend-store-uri" not in bare and "--app-name" not in bare
    env = full.env({"PATH": "/bin", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"})
    assert env["PATH"] == "/bin" and SERVER_ENV.items() <= env.items()
    with pytest.raises(ValueError, match="workers"):
        MlflowServerCommand(port=5000, workers=0)
    spelled_out = [
        str(path.relative_to(ROOT))
        for top in ("pipeline", "tdn", "jobs", "infra", "benchmarks", "tests")
        for path in sorted((ROOT / top).rglob("*.py"))
        if re.search(r"""["']mlflow["'],\s*["']server["']""", path.read_text())
        and path != INFRA / "mlflow" / "command.py"
    ]
    assert not spelled_out, spelled_out


def test_the_mlflow_image_copies_every_module_its_entrypoint_imports() -> None:
    import ast

    copied = set()
    for line in (INFRA / "mlflow" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            copied.update(line.split()[1:-1])
    tree = ast.parse((INFRA / "mlflow" / "server.py").read_text())
    imported = {
        node.module.replace(".", "/") + ".py"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("infra.")
    }
    assert imported and imported <= copied, imported - copied


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
