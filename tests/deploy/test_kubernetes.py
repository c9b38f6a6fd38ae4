"""deploy/kubernetes: valid against the Kubernetes schemas, and wired as drctl needs.

No API server runs here: kubernetes-validate checks every object against the
OpenAPI schemas of Kubernetes (strict: an unknown field is an error), and the
ServiceMonitor against its CRD's schema (tests/deploy/fixtures, from the
Prometheus Operator). The rest reads the manifests as a reviewer would.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).parent.parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
CRD = Path(__file__).parent / "fixtures" / "monitoring.coreos.com_servicemonitors.yaml"
# The oldest with sidecars (initContainers with restartPolicy: Always), and the newest known.
VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
SECRETISH = re.compile(r"(?i)(secret|password|passwd|token|key|credential)")

Doc = dict[str, Any]


def documents() -> list[tuple[str, Doc]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def of_kind(kind: str) -> list[Doc]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def pod(deployment: Doc) -> Doc:
    spec: Doc = deployment["spec"]["template"]["spec"]
    return spec


def container(deployment: Doc, name: str) -> Doc:
    every = pod(deployment)["containers"] + pod(deployment).get("initContainers", [])
    (found,) = [c for c in every if c["name"] == name]
    return dict(found)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_builtin_object_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    checked = []
    for name, doc in documents():
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {exc.message}")
        checked.append(doc["kind"])
    assert sorted(checked) == ["ConfigMap", "Deployment", "Deployment", "Service"]


def strict(schema: Doc) -> Doc:
    """`schema` refusing unknown fields, as the API server's strict field validation does
    (a CRD's schema prunes them silently otherwise): wherever it lists properties and
    does not preserve unknown fields."""
    if not isinstance(schema, dict):
        return schema
    made = {k: strict(v) if isinstance(v, dict) else v for k, v in schema.items()}
    if "properties" in schema:
        made["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            made.setdefault("additionalProperties", False)
    if "items" in schema:
        made["items"] = strict(schema["items"])
    return made


def test_the_service_monitor_is_valid_against_the_prometheus_operator_crd() -> None:
    crd = yaml.safe_load(CRD.read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = strict(served["schema"]["openAPIV3Schema"])
    (monitor,) = of_kind("ServiceMonitor")
    assert monitor["apiVersion"] == f"{crd['spec']['group']}/v1"
    assert monitor["kind"] == crd["spec"]["names"]["kind"]
    jsonschema.validate(monitor, schema)
    # A typo is an error, not a field the operator silently drops.
    endpoint = {**monitor["spec"]["endpoints"][0], "scrapeTimout": "15s"}
    typo = {**monitor, "spec": {**monitor["spec"], "endpoints": [endpoint]}}
    with pytest.raises(jsonschema.ValidationError, match="scrapeTimout"):
        jsonschema.validate(typo, schema)


def test_one_replica_per_site_each_pinned_there_and_otherwise_the_same() -> None:
    ams, rtm = sorted(of_kind("Deployment"), key=lambda d: str(d["metadata"]["name"]))
    for deployment, site in ((ams, "ams"), (rtm, "rtm")):
        assert deployment["spec"]["replicas"] == 1
        terms = pod(deployment)["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        assert terms == [
            {
                "matchExpressions": [
                    {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [site]}
                ]
            }
        ]
        assert f"--identity={site}-drctl" in container(deployment, "drctl")["args"]
    # Nothing else may drift apart between the two sites.
    as_rtm = yaml.safe_dump(ams).replace("ams", "rtm")
    assert as_rtm == yaml.safe_dump(rtm)


def test_each_replica_leads_or_follows_on_etcd_with_the_endpoints_from_the_config_map() -> None:
    (config,) = of_kind("ConfigMap")
    assert config["data"]["lock"].startswith("etcd://")
    for deployment in of_kind("Deployment"):
        drctl = container(deployment, "drctl")
        assert drctl["args"][:2] == ["run", "/specs/current/specs"]
        assert "--lock=$(DRCTL_LOCK)" in drctl["args"]
        (lock,) = [e for e in drctl["env"] if e["name"] == "DRCTL_LOCK"]
        assert lock["valueFrom"]["configMapKeyRef"] == {"name": "drctl", "key": "lock"}


def test_git_sync_is_a_pinned_sidecar_publishing_the_specs_drctl_reads() -> None:
    for deployment in of_kind("Deployment"):
        sync = container(deployment, "git-sync")
        image, _, tag = sync["image"].partition(":")
        assert image == "registry.k8s.io/git-sync/git-sync"
        assert re.fullmatch(r"v4\.\d+\.\d+", tag), tag
        assert sync["restartPolicy"] == "Always"  # a sidecar: drctl starts after its startupProbe
        env = {e["name"]: e.get("value") for e in sync["env"]}
        assert (env["GITSYNC_ROOT"], env["GITSYNC_LINK"]) == ("/specs", "current")
        assert env["GITSYNC_MAX_FAILURES"] == "-1"  # a lost git server never ends it
        assert sync["startupProbe"]["httpGet"]["port"] == int(env["GITSYNC_HTTP_BIND"][1:])
        (volume,) = [v for v in pod(deployment)["volumes"] if v["name"] == "specs"]
        assert volume == {"name": "specs", "emptyDir": {}}
        mounts = {m["name"]: m for m in container(deployment, "drctl")["volumeMounts"]}
        assert mounts["specs"] == {"name": "specs", "mountPath": "/specs", "readOnly": True}


def test_the_probes_are_healthz_and_readyz_on_the_metrics_port() -> None:
    for deployment in of_kind("Deployment"):
        drctl = container(deployment, "drctl")
        assert drctl["ports"] == [{"name": "metrics", "containerPort": 9464}]
        assert "--metrics-addr=0.0.0.0:9464" in drctl["args"]
        assert drctl["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert drctl["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_the_service_and_its_monitor_reach_the_metrics_port_of_both_replicas() -> None:
    (service,) = of_kind("Service")
    (monitor,) = of_kind("ServiceMonitor")
    for deployment in of_kind("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_credentials_are_only_secret_references_never_values() -> None:
    for name, doc in documents():
        if doc["kind"] == "Secret":
            pytest.fail(f"{name}: a Secret with values is in the manifests")
        if doc["kind"] == "ConfigMap":
            assert not [k for k in doc["data"] if SECRETISH.search(k)], name
            continue
        if doc["kind"] != "Deployment":
            continue
        for c in pod(doc)["containers"] + pod(doc)["initContainers"]:
            for env in c.get("env", []):
                if SECRETISH.search(env["name"]):
                    assert "value" not in env, f"{name}: {c['name']}: {env['name']} has a value"
    for deployment in of_kind("Deployment"):
        refs = container(deployment, "drctl")["envFrom"]
        assert refs == [{"secretRef": {"name": "drctl-fabric-credentials"}}]


def test_every_container_runs_non_root_on_a_read_only_root_with_resources() -> None:
    for deployment in of_kind("Deployment"):
        spec = pod(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["automountServiceAccountToken"] is False  # drctl needs no Kubernetes API
        for c in spec["containers"] + spec["initContainers"]:
            context = c["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, c["name"]
            assert context["allowPrivilegeEscalation"] is False, c["name"]
            assert context["capabilities"] == {"drop": ["ALL"]}, c["name"]
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], c["name"]
