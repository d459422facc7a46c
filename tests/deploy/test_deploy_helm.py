"""deploy/helm/sluice without a cluster and without the helm binary (neither can be had here).

Two checks: (1) `helm lint` by Helm's own Go library (helm-sdkpy from PyPI), on the chart with its default values
and on copies with every optional part turned on; it renders each template with Helm's engine and reports
template and YAML errors. (2) the chart rendered by tests/deploy/gotemplate.py (the subset of Go templates and
Helm functions the chart uses) with several sets of values, each manifest validated against the Kubernetes
1.25 and 1.37 API schemas (kubernetes-validate, strict: unknown fields refused), and what the issue asks checked in the
rendered objects: probes, resources, HPA, PDB, ConfigMap, Secret references, Service, Ingress tuned for SSE, the
migration hook.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.config import parse_config
from tests.deploy.gotemplate import Renderer
from tests.deploy.tools import deploy_tool, helm_python

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "sluice"
KUBERNETES = ("1.25.0", "1.37.0")  # the chart's kubeVersion floor, and the newest schemas kubernetes-validate has

LINT = """
import asyncio, json, sys
import helm_sdkpy

async def main() -> None:
    config = helm_sdkpy.Configuration(namespace="default")
    out = {}
    for path in sys.argv[1:]:
        out[path] = await helm_sdkpy.Lint(config).run(path)
    print(json.dumps(out))

asyncio.run(main())
"""

EVERYTHING_ON = {
    "ingress": {"enabled": True, "tls": [{"secretName": "sluice-tls", "hosts": ["sluice.example.com"]}]},
    "serviceMonitor": {"enabled": True, "bearerTokenSecret": {"name": "sluice-secrets"}},
    "secret": {"existingSecret": "sluice-secrets"},
    "externalDatabase": {"existingSecret": "sluice-db"},
    "externalRedis": {"url": "redis://redis.data:6379/0"},
    "phoenix": {"collectorEndpoint": "http://phoenix.observability:6006"},
    "env": {"SLUICE_LOG_FORMAT": "json"},
    "podAnnotations": {"example.com/team": "platform"},
}
FIXED_REPLICAS = {"autoscaling": {"enabled": False}, "podDisruptionBudget": {"enabled": False},
                  "secret": {"create": True, "data": {"SLUICE_API_KEYS": "sk-x"}},
                  "externalDatabase": {"url": "postgresql+asyncpg://sluice@pg/sluice"}}


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def chart_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


def render(overrides: dict[str, Any]) -> list[dict[str, Any]]:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    renderer = Renderer({"Values": merged(chart_values(), overrides),
                         "Release": {"Name": "demo", "Namespace": "default", "Service": "Helm"},
                         "Chart": {"Name": chart["name"], "Version": chart["version"],
                                   "AppVersion": chart["appVersion"]}})
    renderer.load((CHART / "templates" / "_helpers.tpl").read_text())
    documents = []
    for template in sorted((CHART / "templates").glob("*.yaml")):
        text = renderer.render(renderer.load(template.read_text()))
        documents += [doc for doc in yaml.safe_load_all(text) if doc]
    return documents


def by_kind(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = {doc["kind"]: doc for doc in documents}
    assert len(kinds) == len(documents), [doc["kind"] for doc in documents]
    return kinds


def validate(documents: list[dict[str, Any]], tmp_path: Path) -> None:
    """Every built-in kind against the Kubernetes schemas (strict); the ServiceMonitor is a CRD and is not."""
    builtin = [doc for doc in documents if doc["apiVersion"] != "monitoring.coreos.com/v1"]
    files = []
    for index, doc in enumerate(builtin):
        path = tmp_path / f"{index}-{doc['kind']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        files.append(str(path))
    for version in KUBERNETES:
        done = subprocess.run([deploy_tool("kubernetes-validate"), "--strict", "-k", version, "--quiet", *files],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"Kubernetes {version}: {done.stdout}{done.stderr}"


@pytest.mark.parametrize("overrides", [{}, EVERYTHING_ON, FIXED_REPLICAS], ids=["defaults", "everything", "fixed"])
def test_rendered_manifests_are_valid_kubernetes(overrides: dict[str, Any], tmp_path: Path) -> None:
    validate(render(overrides), tmp_path)


def test_defaults_render_what_the_issue_asks() -> None:
    kinds = by_kind(render({}))
    assert set(kinds) == {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service",
                          "ServiceAccount"}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["SLUICE_CONFIG"] == "/etc/sluice/sluice.yaml" and env["SLUICE_PORT"] == "8000"
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert mounts["/etc/sluice"] == "config" and env["SLUICE_DATA_DIR"] in mounts
    # The grace period covers the pre-stop pause and the server's own shutdown grace.
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= int(container["lifecycle"]["preStop"]["exec"]["command"][1]) + \
        chart_values()["config"]["server"]["shutdown_grace_seconds"]
    # The ConfigMap holds a sluice.yaml that Sluice itself accepts.
    config_text = kinds["ConfigMap"]["data"]["sluice.yaml"]
    parse_config(config_text, "configmap.yaml")
    assert "replicas" not in kinds["Deployment"]["spec"]  # the HPA owns it
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == kinds["Deployment"]["metadata"]["name"] and hpa["minReplicas"] >= 2
    selector = kinds["Deployment"]["spec"]["selector"]["matchLabels"]
    assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    assert kinds["Service"]["spec"]["selector"] == selector
    assert kinds["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    assert "envFrom" not in container  # no Secret named: nothing referenced that does not exist


def test_optional_parts_and_secret_references() -> None:
    kinds = by_kind(render(EVERYTHING_ON))
    assert {"Ingress", "ServiceMonitor", "Job"} <= set(kinds) and "Secret" not in kinds
    (container,) = kinds["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "sluice-secrets"}}]
    env = {item["name"]: item for item in container["env"]}
    assert env["SLUICE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "sluice-db",
                                                                      "key": "SLUICE_DATABASE_URL"}
    assert env["SLUICE_REDIS_URL"]["value"] == "redis://redis.data:6379/0"
    assert env["PHOENIX_COLLECTOR_ENDPOINT"]["value"] == "http://phoenix.observability:6006"
    annotations = kinds["Ingress"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    backend = kinds["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": kinds["Service"]["metadata"]["name"], "port": {"name": "http"}}
    job = kinds["Job"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["args"] == ["db", "upgrade"]
    assert {item["name"] for item in migrate["env"]} >= {"SLUICE_DATABASE_URL", "SLUICE_REDIS_URL"}
    endpoint = kinds["ServiceMonitor"]["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics" and endpoint["authorization"]["credentials"]["name"] == "sluice-secrets"


def test_fixed_replicas_and_a_chart_made_secret() -> None:
    kinds = by_kind(render(FIXED_REPLICAS))
    assert kinds["Deployment"]["spec"]["replicas"] == 2
    assert "HorizontalPodAutoscaler" not in kinds and "PodDisruptionBudget" not in kinds
    assert kinds["Secret"]["stringData"] == {"SLUICE_API_KEYS": "sk-x"}
    (container,) = kinds["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": kinds["Secret"]["metadata"]["name"]}}]


def test_config_change_rolls_the_pods() -> None:
    def checksum(overrides: dict[str, Any]) -> str:
        deployment = by_kind(render(overrides))["Deployment"]
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])
    assert checksum({}) != checksum({"config": {"models": [{"name": "m", "provider": "mock", "model": "x"}]}})


def test_helm_lint(tmp_path: Path) -> None:
    """Helm's own engine renders and lints the chart: defaults, everything on, and a broken copy it must reject."""
    python = helm_python()
    on = tmp_path / "everything-on"
    shutil.copytree(CHART, on)
    (on / "values.yaml").write_text(yaml.safe_dump(merged(chart_values(), EVERYTHING_ON)))
    broken = tmp_path / "broken"
    shutil.copytree(CHART, broken)
    with (broken / "templates" / "service.yaml").open("a") as template:
        template.write("{{ if .Values.service.port }}\n")  # an `if` with no `end`
    done = subprocess.run([python, "-c", LINT, str(CHART), str(on), str(broken)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    for path in (str(CHART), str(on)):
        result = results[path]
        assert result["TotalChartsLinted"] == 1 and not result["Errors"], result
        assert [m for m in result["Messages"] if m["Severity"] >= 2] == [], result  # warnings or errors
    assert results[str(broken)]["Errors"], results[str(broken)]
