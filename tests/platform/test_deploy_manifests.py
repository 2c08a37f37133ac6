"""The Kubernetes manifests are valid (no cluster runs here) and agree with settings and queues."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from picterra.celery import app
from tests.conftest import REPO
from tests.platform.test_configuration import settings_variables

DEPLOY = REPO / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"

# The part of KEDA's ScaledObject (keda.sh/v1alpha1) these manifests use, with its required fields.
SCALED_OBJECT_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"const": "redis"},
                            "metadata": {
                                "type": "object",
                                "required": ["address", "listName", "listLength"],
                                "additionalProperties": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def documents() -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        docs += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def by_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in documents() if doc["kind"] == kind}


@pytest.mark.parametrize(("path", "doc"), documents(), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_every_manifest_matches_its_schema(path, doc):
    if doc["kind"] == "ScaledObject":
        jsonschema.validate(doc, SCALED_OBJECT_SCHEMA)
    elif doc["kind"] != "Kustomization":
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example():
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    files = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kustomization["resources"]) == files


def test_environment_names_are_the_settings_own():
    known = settings_variables()
    configmap = by_kind("ConfigMap")["picterra-config"]["data"]
    secret = yaml.safe_load((DEPLOY / "secret.example.yaml").read_text())["stringData"]
    assert set(configmap) | set(secret) <= known
    for deployment in by_kind("Deployment").values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert {e["name"] for e in container.get("env", [])} <= known


def test_gpu_workers_take_the_gpu_queue_and_are_scaled_on_its_length():
    gpu = by_kind("Deployment")["picterra-worker-gpu"]
    container = gpu["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "CELERY_WORKER_QUEUES", "value": "gpu"} in container["env"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    cpu = by_kind("Deployment")["picterra-worker-default"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "CELERY_WORKER_QUEUES", "value": "default"} in cpu["env"]
    [scaler] = by_kind("ScaledObject").values()
    assert scaler["spec"]["scaleTargetRef"]["name"] == "picterra-worker-gpu"
    gpu_queue = next(q for q in app.conf.task_queues if q.name == "gpu")
    assert scaler["spec"]["triggers"][0]["metadata"]["listName"] == gpu_queue.name
    assert by_kind("Deployment")["picterra-beat"]["spec"]["replicas"] == 1


def test_the_validators_do_reject_broken_manifests():
    deployment = by_kind("Deployment")["picterra-web"]
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two", "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    [scaler] = by_kind("ScaledObject").values()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**scaler, "spec": {**scaler["spec"], "minReplica": 0}}, SCALED_OBJECT_SCHEMA)
