"""The Kubernetes manifests (docker/k8s/) against the Kubernetes API schemas, offline.

Every document validates strictly (unknown fields rejected) against the schemas shipped by the
``kubernetes-validate`` package for the oldest and the newest Kubernetes release checked; then the
manifests are checked against each other and against the images: probes on /readyz and /healthz,
bundles read-only, the Service, autoscaler and disruption budget pointing at the Deployment's pods,
the trainer running the training image's bundle script.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="the dev extra's kubernetes-validate is not installed")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "docker" / "k8s"
VERSIONS = ["1.29.0", "1.37.0"]


def _docs() -> dict[str, dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


DOCS = _docs()


def test_the_expected_kinds_are_there():
    assert set(DOCS) == {"PersistentVolumeClaim", "Job", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kind", sorted(DOCS))
def test_manifest_validates_against_the_kubernetes_schema(kind, version):
    kubernetes_validate.validate(DOCS[kind], version, strict=True)


def test_the_validator_rejects_a_misspelled_field():
    bad = copy.deepcopy(DOCS["Deployment"])
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"].pop(
        "httpGet"
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[-1], strict=True)


def _api():
    pod = DOCS["Deployment"]["spec"]["template"]
    return pod, pod["spec"]["containers"][0]


def test_deployment_probes_security_and_read_only_bundles():
    pod, api = _api()
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    mounts = {m["name"]: m for m in api["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert mounts["models"]["mountPath"] == "/models" and mounts["models"]["readOnly"] is True
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": DOCS["PersistentVolumeClaim"]["metadata"]["name"], "readOnly": True}
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert env["DISTILLREC_MODELS_DIR"] == "/models"
    assert api["image"].startswith("distillrec-service:")


def test_service_hpa_and_pdb_point_at_the_deployment():
    deployment = DOCS["Deployment"]
    pod, api = _api()
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert DOCS["Service"]["spec"]["selector"].items() <= labels.items()
    assert DOCS["Service"]["spec"]["ports"][0]["targetPort"] in {p["name"] for p in api["ports"]}
    assert DOCS["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = DOCS["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert DOCS["HorizontalPodAutoscaler"]["spec"]["minReplicas"] > DOCS["PodDisruptionBudget"]["spec"]["minAvailable"]


def test_trainer_job_runs_the_bundle_script_of_the_training_image():
    job = DOCS["Job"]["spec"]["template"]["spec"]
    trainer = job["containers"][0]
    assert trainer["image"].startswith("distillrec-training:")
    script = trainer["command"][-1]
    assert f"COPY docker/build-bundles.sh {script}" in (ROOT / "docker" / "training.Dockerfile").read_text()
    mounts = {m["mountPath"]: m["name"] for m in trainer["volumeMounts"]}
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in job["volumes"]}
    assert claims[mounts["/models"]] == DOCS["PersistentVolumeClaim"]["metadata"]["name"]
    env = {e["name"]: e["value"] for e in trainer["env"]}
    for key in ("TEACHER_CONFIG", "STUDENT_CONFIG"):
        assert (ROOT / env[key]).is_file(), f"{key}={env[key]} does not exist"
