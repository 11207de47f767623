"""deploy/, validated offline: every overlay renders with ``kubectl kustomize``, every
object passes ``kubernetes-validate --strict``, and the pods run what the tests run.

A missing kubectl skips these tests on a workstation and fails them in CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from registryd.app import create_app
from registryd.config import Settings, env_var, resolve, setting_names
from tests.process.conftest import SERVE_COMMAND

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# s3-web-identity is s3 with the other credentials component, made in deploy_copy.
OVERLAYS = ("single", "multi", "s3", "s3-web-identity")
# Oldest and newest Kubernetes these manifests are checked against.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
# Custom resources (CloudNativePG, Prometheus Operator): no schemas ship with
# kubernetes-validate, so their fields are checked by hand below.
CUSTOM_KINDS = {
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}

# Files an operator makes from the *.example next to them; never committed.
SECRET_FILES = ("secrets.env", "s3-credentials.env")
S3_CREDENTIALS = "registryd-s3-credentials"
# The s3 backend's settings as variables (the README's table once the backend is merged).
S3_VARS = {
    "REGISTRYD_STORAGE",
    "REGISTRYD_S3_BUCKET",
    "REGISTRYD_S3_PREFIX",
    "REGISTRYD_S3_REGION",
    "REGISTRYD_S3_ENDPOINT_URL",
    "REGISTRYD_S3_PATH_STYLE",
    "REGISTRYD_S3_REDIRECT",
    "REGISTRYD_S3_PART_BYTES",
}
# The AWS SDK's credentials: never a literal value in a manifest.
AWS_SECRET_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

Resource = dict[str, Any]


def _kubectl() -> str:
    found = shutil.which("kubectl") or shutil.which(
        "kubectl", path=str(Path(sys.executable).parent)
    )
    if found is None:
        message = "kubectl is not installed (.ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def deploy_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/ with each overlay's secret files made from their examples, as an operator
    would."""
    copy = tmp_path_factory.mktemp("deploy") / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns(*SECRET_FILES))
    for example in copy.glob("overlays/*/*.env.example"):
        shutil.copy(example, example.with_name(example.name.removesuffix(".example")))
    # The s3 overlay switched to web identity as its README says: the other component,
    # and no access-key Secret.
    web_identity = copy / "overlays" / "s3-web-identity"
    shutil.copytree(copy / "overlays" / "s3", web_identity)
    (web_identity / "s3-credentials.env").unlink()
    kustomization = yaml.safe_load((web_identity / "kustomization.yaml").read_text())
    assert kustomization["components"] == ["../../components/s3-credentials-secret"]
    kustomization["components"] = ["../../components/s3-web-identity"]
    kustomization["secretGenerator"] = [
        g for g in kustomization["secretGenerator"] if g["name"] != S3_CREDENTIALS
    ]
    (web_identity / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    # An overlay with the optional ServiceMonitor, to render the component too.
    monitored = copy / "overlays" / "multi-monitored"
    monitored.mkdir()
    (monitored / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [../multi]\ncomponents: [../../components/servicemonitor]\n"
    )
    return copy


def render(deploy_copy: Path, overlay: str) -> list[Resource]:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(deploy_copy / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest, deploy_copy: Path) -> list[Resource]:
    return render(deploy_copy, request.param)


def one(resources: list[Resource], kind: str, name: str | None = None) -> Resource:
    found = [r for r in resources if r["kind"] == kind and name in (None, r["metadata"]["name"])]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def pod_templates(resources: list[Resource]) -> Iterator[tuple[str, Resource]]:
    for r in resources:
        if r["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield f"{r['kind']}/{r['metadata']['name']}", r["spec"]["template"]["spec"]


def test_every_object_validates_strictly(rendered: list[Resource]) -> None:
    custom = []
    for resource in rendered:
        if (resource["apiVersion"], resource["kind"]) in CUSTOM_KINDS:
            custom.append(resource)
            continue
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(resource, version, strict=True)
    for resource in custom:
        if resource["kind"] == "Cluster":
            spec = resource["spec"]
            assert spec["instances"] >= 1
            assert spec["bootstrap"]["initdb"] == {"database": "registryd", "owner": "registryd"}


def test_monitoring_component_renders(deploy_copy: Path) -> None:
    resources = render(deploy_copy, "multi-monitored")
    monitor = one(resources, "ServiceMonitor")
    service = one(resources, "Service", "registryd")
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )


def test_pods_run_the_readme_command(rendered: list[Resource]) -> None:
    [server] = one(rendered, "Deployment", "registryd")["spec"]["template"]["spec"]["containers"]
    assert server["command"] == list(SERVE_COMMAND)
    assert "args" not in server
    [migrate] = one(rendered, "Job", "registryd-migrate")["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["registryd", "migrate"]
    assert server["image"] == migrate["image"]


def test_containerfile_runs_the_readme_command() -> None:
    lines = (DEPLOY / "Containerfile").read_text().splitlines()
    [cmd] = [line for line in lines if line.startswith("CMD ")]
    assert json.loads(cmd.removeprefix("CMD ")) == list(SERVE_COMMAND)
    assert any(line.startswith("USER 10001") for line in lines)
    assert " ".join(SERVE_COMMAND) in (ROOT / "README.md").read_text()


def test_probes_hit_the_health_endpoints(rendered: list[Resource]) -> None:
    [server] = one(rendered, "Deployment", "registryd")["spec"]["template"]["spec"]["containers"]
    assert server["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert server["startupProbe"]["httpGet"]["path"] == "/livez"
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert server[probe]["httpGet"]["port"] in ports
    assert server["resources"]["requests"]
    assert server["resources"]["limits"]


def test_configuration_is_valid_for_registryd(rendered: list[Resource]) -> None:
    """The ConfigMap and env parse with registryd's own rules, with no unknown variable."""
    config = one(rendered, "ConfigMap")["data"]
    deployment = one(rendered, "Deployment", "registryd")
    [server] = deployment["spec"]["template"]["spec"]["containers"]
    env_names = {e["name"] for e in server["env"]}
    environ = {**config, **{name: "x" * 40 for name in env_names if name.endswith("SECRET")}}
    stateless = environ.get("REGISTRYD_STORAGE") == "s3"
    if "storage" not in setting_names():
        # A build without the s3 backend: its variables are the names it will have.
        assert set(environ) & S3_VARS <= S3_VARS
        environ = {k: v for k, v in environ.items() if k not in S3_VARS}
    resolved = resolve(environ)
    assert resolved.unknown_env == []
    assert [n for n in env_names if n.startswith("REGISTRYD_") and n not in _setting_vars()] == []
    settings = resolved.settings
    ports = [p["containerPort"] for p in server["ports"]]
    assert ports == [settings.port]
    assert settings.host == "0.0.0.0"
    mounts = {m["mountPath"] for m in server["volumeMounts"]}
    # Blobs on a volume at the data directory, or (s3) no volume there at all.
    assert (str(settings.data_dir) in mounts) is not stateless
    # The pod is given the time the drain may take before it is killed.
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > settings.drain_delay_seconds + settings.drain_timeout_seconds + 10
    # Behind the ingress, clients are told apart by the X-Forwarded-For it appends.
    assert settings.trusted_proxies
    # Readiness answers before the kubelet gives up on it.
    assert server["readinessProbe"]["timeoutSeconds"] > settings.readiness_timeout_seconds


def _setting_vars() -> set[str]:
    return {env_var(name) for name in setting_names()}


def test_secrets_come_from_secrets(rendered: list[Resource]) -> None:
    [server] = one(rendered, "Deployment", "registryd")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in server["env"]}
    for name in ("REGISTRYD_TOKEN_SECRET", "REGISTRYD_ADMIN_PASSWORD"):
        assert "secretKeyRef" in env[name]["valueFrom"]
    url = env["REGISTRYD_DATABASE_URL"]
    assert "secretKeyRef" in url.get("valueFrom", {}) or "$(DB_PASSWORD)" in url["value"]
    config = one(rendered, "ConfigMap")["data"]
    assert not any("PASSWORD" in key or "SECRET" in key for key in config)


def test_pods_are_locked_down(rendered: list[Resource]) -> None:
    for where, pod in pod_templates(rendered):
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert "limits" in container["resources"], where
            assert any(
                m["mountPath"] == "/tmp" and m["name"] in tmp_volumes
                for m in container["volumeMounts"]
            ), where


def test_disruption_network_and_ingress(rendered: list[Resource]) -> None:
    pdb = one(rendered, "PodDisruptionBudget")
    deployment = one(rendered, "Deployment", "registryd")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    policy = one(rendered, "NetworkPolicy", "registryd")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert {"Ingress", "Egress"} == set(policy["spec"]["policyTypes"])
    ingress = one(rendered, "Ingress")
    [rule] = ingress["spec"]["rules"]
    public = {path["path"] for path in rule["http"]["paths"]}
    assert public == {"/v1", "/v2", "/_ping", "/ui"}  # not /metrics, /livez, /readyz
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"


def test_topologies(deploy_copy: Path) -> None:
    single = render(deploy_copy, "single")
    assert one(single, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert one(single, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteOnce"]
    one(single, "StatefulSet", "registryd-postgres")
    multi = render(deploy_copy, "multi")
    assert one(multi, "Deployment")["spec"]["replicas"] == 3
    assert one(multi, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]
    cluster = one(multi, "Cluster", "registryd-db")
    [server] = one(multi, "Deployment")["spec"]["template"]["spec"]["containers"]
    url = next(e for e in server["env"] if e["name"] == "REGISTRYD_DATABASE_URL")
    assert url["valueFrom"]["secretKeyRef"]["name"] == cluster["metadata"]["name"] + "-app"


def test_real_secrets_are_never_committed() -> None:
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "deploy"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert not [path for path in tracked if path.endswith(SECRET_FILES)]


# A valid S3 bucket name (3-63 of lower-case letters, digits, dots and hyphens).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@pytest.mark.parametrize("overlay", ["s3", "s3-web-identity"])
def test_s3_replicas_are_stateless(deploy_copy: Path, overlay: str) -> None:
    """No volume holds blobs or uploads: several replicas, one bucket, an external
    PostgreSQL from a Secret, and a way out to the bucket."""
    resources = render(deploy_copy, overlay)
    stateful = ("PersistentVolumeClaim", "StatefulSet")
    assert [r["kind"] for r in resources if r["kind"] in stateful] == []
    for where, pod in pod_templates(resources):
        kinds = {key for volume in pod["volumes"] for key in volume if key != "name"}
        assert kinds <= {"emptyDir", "projected"}, where
    deployment = one(resources, "Deployment", "registryd")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert one(resources, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    config = one(resources, "ConfigMap")["data"]
    assert config["REGISTRYD_STORAGE"] == "s3"
    assert _BUCKET_RE.fullmatch(config["REGISTRYD_S3_BUCKET"])
    assert set(config) & S3_VARS <= S3_VARS
    for where, pod in pod_templates(resources):
        [container] = pod["containers"]
        url = next(e for e in container["env"] if e["name"] == "REGISTRYD_DATABASE_URL")
        ref = url["valueFrom"]["secretKeyRef"]
        assert ref["key"] == "database-url", where
        assert "database-url" in one(resources, "Secret", ref["name"])["data"], where
    egress = one(resources, "NetworkPolicy", "registryd")["spec"]["egress"]
    assert {"port": 443, "protocol": "TCP"} in [p for rule in egress for p in rule["ports"]]


def _example_values(overlay: Path) -> list[str]:
    values = []
    for example in overlay.glob("*.env.example"):
        for line in example.read_text().splitlines():
            value = line.partition("=")[2]
            if not line.startswith("#") and len(value) >= 16:  # not "admin", a user name
                values.append(value)
    return values


@pytest.mark.parametrize("overlay", ["s3", "s3-web-identity"])
def test_s3_credentials_are_never_literal(deploy_copy: Path, overlay: str) -> None:
    resources = render(deploy_copy, overlay)
    # Not one secret value outside a Secret object (there it is base64).
    secrets = _example_values(deploy_copy / "overlays" / overlay)
    assert len(secrets) >= 3
    for resource in resources:
        if resource["kind"] != "Secret":
            text = yaml.safe_dump(resource)
            assert [v for v in secrets if v in text] == [], resource["kind"]
    for where, pod in pod_templates(resources):
        for container in pod["containers"]:
            for entry in container.get("env", []):
                if entry["name"] in AWS_SECRET_VARS:
                    assert "secretKeyRef" in entry["valueFrom"], where
    config = one(resources, "ConfigMap")["data"]
    assert not [key for key in config if key.startswith("AWS_")]


def test_s3_credentials_from_a_secret(deploy_copy: Path) -> None:
    resources = render(deploy_copy, "s3")
    [server] = one(resources, "Deployment", "registryd")["spec"]["template"]["spec"]["containers"]
    [name] = [s["secretRef"]["name"] for s in server["envFrom"] if "secretRef" in s]
    assert name.startswith(S3_CREDENTIALS + "-")  # generated: a change rolls the pods
    keys = set(one(resources, "Secret", name)["data"])
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= keys
    assert not [e for e in server["env"] if e["name"].startswith("AWS_")]


def test_s3_credentials_from_the_service_account(deploy_copy: Path) -> None:
    resources = render(deploy_copy, "s3-web-identity")
    assert not [r for r in resources if r["metadata"]["name"].startswith(S3_CREDENTIALS)]
    account = one(resources, "ServiceAccount", "registryd")
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", role)
    pod = one(resources, "Deployment", "registryd")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    # The Kubernetes API token stays unmounted; the projected one is only for STS.
    assert pod["automountServiceAccountToken"] is False
    assert account["automountServiceAccountToken"] is False
    [server] = pod["containers"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["AWS_ROLE_ARN"] == role
    assert "secretRef" not in str(server["envFrom"])
    [volume] = [v for v in pod["volumes"] if "projected" in v]
    [source] = volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["audience"] == "sts.amazonaws.com"
    assert token["expirationSeconds"] <= 86400
    [mount] = [m for m in server["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == f"{mount['mountPath']}/{token['path']}"


def test_ingress_publishes_every_api_route_and_no_ops_route(deploy_copy: Path) -> None:
    [rule] = one(render(deploy_copy, "single"), "Ingress")["spec"]["rules"]
    paths = rule["http"]["paths"]

    def public(route: str) -> bool:
        return any(
            route == p["path"] or (p["pathType"] == "Prefix" and route.startswith(p["path"] + "/"))
            for p in paths
        )

    app = create_app(Settings(database_url="postgresql://unused/db"))
    routes = {resource.canonical for resource in app.router.resources()}
    ops = {"/livez", "/readyz", "/metrics"}
    assert ops <= routes
    assert [route for route in routes - ops if not public(route)] == []
    assert [route for route in ops if public(route)] == []
